/**
 * One error type for both Cloud Storage APIs. A handler throws it; the server renders it as the JSON API
 * error envelope or as the XML API `<Error>` document, depending on which API was called.
 */
export class StorageError extends Error {
  constructor(
    readonly status: number,
    /** JSON API `errors[].reason` (e.g. `notFound`). */
    readonly reason: string,
    message: string,
    /** XML API `<Code>` (e.g. `NoSuchKey`); extra elements such as `StringToSign` go in `details`. */
    readonly xmlCode = 'InvalidArgument',
    readonly details: Record<string, string> = {},
  ) {
    super(message);
  }

  toJson() {
    return {
      error: {
        code: this.status,
        message: this.message,
        errors: [{ message: this.message, domain: 'global', reason: this.reason }],
      },
    };
  }

  toXml(): string {
    const extra = Object.entries(this.details)
      .map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`)
      .join('');
    return (
      `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${this.xmlCode}</Code>` +
      `<Message>${escapeXml(this.message)}</Message>${extra}</Error>`
    );
  }
}

export const escapeXml = (s: string) =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');

export const badRequest = (message: string, reason = 'invalid') =>
  new StorageError(400, reason, message, 'InvalidArgument');

export const noSuchBucket = (bucket: string) =>
  new StorageError(404, 'notFound', `The specified bucket does not exist: ${bucket}`, 'NoSuchBucket');

export const noSuchObject = (bucket: string, name: string) =>
  new StorageError(404, 'notFound', `No such object: ${bucket}/${name}`, 'NoSuchKey');

export const conflict = (message: string) => new StorageError(409, 'conflict', message, 'Conflict');

export const preconditionFailed = (message: string) =>
  new StorageError(412, 'conditionNotMet', message, 'PreconditionFailed');

export const accessDenied = (
  message: string,
  xmlCode = 'AccessDenied',
  details: Record<string, string> = {},
) => new StorageError(403, 'forbidden', message, xmlCode, details);

export const notImplemented = (message: string) =>
  new StorageError(501, 'notImplemented', message, 'NotImplemented');

/** Thrown by body readers when the request body breaks a size limit. */
export class BodyLimitError extends Error {
  constructor(
    readonly kind: 'tooLarge' | 'tooSmall',
    message: string,
  ) {
    super(message);
  }
}
