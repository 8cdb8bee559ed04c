import { describe, expect, it } from 'vitest';
import { grantStatements } from './migrate.ts';

describe('grantStatements', () => {
  it('grants DML to read-write users and SELECT to readers, identifiers quoted', () => {
    expect(grantStatements({ 'fn-update@p.iam': 'readwrite', 'x"y': 'read' })).toEqual([
      'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "fn-update@p.iam"',
      'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "fn-update@p.iam"',
      'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "x""y"',
    ]);
  });
});
