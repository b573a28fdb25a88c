// Job kinds of the backups domain, in a module of their own so tasks and services can share them
// without importing each other.

export const COPY_JOB = 'backup.copy';
export const DELETE_JOB = 'backup.delete';
export const SWEEP_JOB = 'backup.sweep';
