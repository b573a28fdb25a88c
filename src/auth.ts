// Who is calling. Built by an Authenticator from the X-Auth-Token header; the domain takes it as
// a plain value so the CLI and HTTP share it. No Fastify here.

export type Role = 'admin' | 'member';

export interface AuthContext {
  projectId: string;
  roles: readonly Role[];
  isAdmin: boolean;
  /** Kept so a region can call a source region's API on the caller's behalf. Never logged. */
  token: string;
}

/** Validates a token. Static tokens from config today; Keystone later behind the same interface. */
export interface Authenticator {
  authenticate(token: string): Promise<AuthContext | null>;
}

export class StaticTokenAuthenticator implements Authenticator {
  private readonly byToken: Map<string, AuthContext>;
  constructor(tokens: ReadonlyArray<{ token: string; project: string; roles: readonly Role[] }>) {
    this.byToken = new Map(
      tokens.map((t) => [t.token, { projectId: t.project, roles: t.roles, isAdmin: t.roles.includes('admin'), token: t.token }]),
    );
  }
  async authenticate(token: string): Promise<AuthContext | null> {
    return this.byToken.get(token) ?? null;
  }
}
