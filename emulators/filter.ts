/**
 * Pub/Sub subscription filters, the subset the topology uses, evaluated locally because the emulator
 * stores filters but ignores them: `attributes.KEY = "VALUE"`, `attributes:KEY` / `attributes:"KEY"`,
 * joined by OR / AND, with NOT and parentheses.
 */
export type Filter = (attributes: Record<string, string>) => boolean;

export function compileFilter(source: string): Filter {
  const tokens = source.match(/\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"=:]+|=|:/g) ?? [];
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => {
    const t = tokens[pos++];
    if (t === undefined) throw new Error(`unexpected end of filter: ${source}`);
    return t;
  };
  const unquote = (t: string) => (t.startsWith('"') ? JSON.parse(t) : t);

  const atom = (): Filter => {
    const t = next();
    if (t === '(') {
      const inner = or();
      if (next() !== ')') throw new Error(`missing ) in filter: ${source}`);
      return inner;
    }
    if (t === 'NOT' || t === '-') {
      const inner = atom();
      return (a) => !inner(a);
    }
    const m = /^attributes\.(.+)$/.exec(t);
    if (m && peek() === '=') {
      next();
      const key = m[1]!;
      const value = unquote(next());
      return (a) => a[key] === value;
    }
    if (t === 'attributes' && peek() === ':') {
      next();
      const key = unquote(next());
      return (a) => Object.hasOwn(a, key);
    }
    throw new Error(`unsupported filter term "${t}" in: ${source}`);
  };
  const and = (): Filter => {
    let left = atom();
    while (peek() === 'AND') {
      next();
      const l = left;
      const r = atom();
      left = (a) => l(a) && r(a);
    }
    return left;
  };
  const or = (): Filter => {
    let left = and();
    while (peek() === 'OR') {
      next();
      const l = left;
      const r = and();
      left = (a) => l(a) || r(a);
    }
    return left;
  };
  const f = or();
  if (pos !== tokens.length) throw new Error(`unexpected "${tokens[pos]}" in filter: ${source}`);
  return f;
}
