import Type from 'typebox';

// Path and query schemas shared by route files.

export const ProjectParams = Type.Object({ project_id: Type.String({ minLength: 1, maxLength: 64 }) });
export const BackupParams = Type.Object({
  project_id: Type.String({ minLength: 1, maxLength: 64 }),
  id: Type.String({ minLength: 1, maxLength: 64 }),
});

/** Base URL of a project's API, for links. */
export function projectBase(publicUrl: string, projectId: string): string {
  return `${publicUrl}/v1.0/${encodeURIComponent(projectId)}`;
}
