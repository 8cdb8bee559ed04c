/** RFC 9457 problem details. One HTTP error type; domain errors are mapped to it at the edge. */
export interface FieldError {
  path: string;
  message: string;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
    readonly extra: { errors?: FieldError[]; headers?: Record<string, string>; type?: string } = {},
  ) {
    super(detail ?? title);
  }

  toProblem() {
    return {
      type:
        this.extra.type ?? `https://ldr.dev/problems/${this.title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      title: this.title,
      status: this.status,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(this.extra.errors ? { errors: this.extra.errors } : {}),
    };
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new HttpError(400, 'Bad Request', detail, { errors });
export const unauthorized = (detail: string) =>
  new HttpError(401, 'Unauthorized', detail, {
    headers: {
      'WWW-Authenticate': `Bearer error="invalid_token", error_description="${detail.replace(/"/g, "'")}"`,
    },
  });
export const forbidden = (detail: string) => new HttpError(403, 'Forbidden', detail);
export const notFound = (detail = 'Not found') => new HttpError(404, 'Not Found', detail);
export const notImplemented = (detail: string) => new HttpError(501, 'Not Implemented', detail);
