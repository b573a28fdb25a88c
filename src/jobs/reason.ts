// The reason a job failed, as people read it in fail_reason and in logs.

/** A longer reason is cut: it is read as one line in listings and logs. */
const MAX_REASON = 500;

/** A one-line human reason for fail_reason and logs. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.replace(/\s+/g, ' ').trim() || 'unknown error';
  return line.length > MAX_REASON ? `${line.slice(0, MAX_REASON)}...` : line;
}
