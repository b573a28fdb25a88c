import pino, { type Logger } from 'pino';

// Secrets never reach logs: redact every field that may carry one, wherever it appears.
export const REDACT_PATHS = [
  'token',
  '*.token',
  'key',
  '*.key',
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  'passphrase',
  '*.passphrase',
  'req.headers["x-auth-token"]',
  'req.headers.authorization',
  'headers["x-auth-token"]',
  'headers["x-storage-pass"]',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
