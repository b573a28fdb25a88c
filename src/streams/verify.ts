import { IntegrityError } from '../errors.ts';

export interface ExpectedDigest {
  md5?: string;
  size?: number;
}

/**
 * Throws IntegrityError when bytes that went through a digest stream are not the ones expected.
 * `what` names the operation and object, e.g. "put file:///srv/x"; the message says expected vs got.
 */
export function verifyDigest(what: string, got: { md5(): string; bytes: number }, expected: ExpectedDigest): void {
  if (expected.size !== undefined && got.bytes !== expected.size) {
    throw new IntegrityError(`${what}: expected ${expected.size} bytes, got ${got.bytes}`);
  }
  if (expected.md5 !== undefined && got.md5() !== expected.md5.toLowerCase()) {
    throw new IntegrityError(`${what}: expected md5 ${show(expected.md5)}, got ${got.md5()}`);
  }
}

/** The expected value comes from callers and remote stores: keep it short and printable. */
function show(value: string): string {
  return JSON.stringify(value.slice(0, 64));
}
