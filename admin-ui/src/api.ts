// The portal's admin API (crates/portal/README.md, "Admin API"), typed as it answers. The token
// lives in sessionStorage (gone with the tab) and only ever travels in the Authorization header.

const TOKEN_KEY = "ember-admin-token";
const BASE = "/api/admin/v1";

export interface Me {
  user_id: string;
  email: string;
  account: string;
}
export interface User {
  id: string;
  email: string;
  name: string;
  kind: "person" | "service" | string;
  admin: boolean;
  disabled: boolean;
  has_password: boolean;
  groups: string[];
}
export interface Group {
  id: string;
  name: string;
  members: string[];
}
export interface Site {
  id: string;
  name: string;
}
export interface Gateway {
  id: string;
  site_id: string;
  name: string;
}
export interface Resource {
  id: string;
  site_id: string;
  name: string;
  address: string;
  description: string | null;
  filters: unknown[];
}
export interface Policy {
  id: string;
  group_id: string;
  resource_id: string;
}
export interface IssuedToken {
  id: string;
  token: string;
}
export interface Online {
  devices: { device_id: string; user_id: string; grants: { gateway_id: string; resource_ids: string[] }[] }[];
  gateways: { gateway_id: string; site_id: string; connections: number }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

async function call<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(BASE + path, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const text = await response.text();
  const value: unknown = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (value ?? {}) as { error?: string; message?: string };
    throw new ApiError(response.status, error.error ?? "error", error.message ?? response.statusText);
  }
  return value as T;
}

/** One signed-in admin's calls, scoped to their account. */
export class Api {
  constructor(
    private readonly token: string,
    readonly account: string,
  ) {}

  static async signIn(token: string): Promise<{ api: Api; me: Me }> {
    const me = await call<Me>(token, "GET", "/me");
    return { api: new Api(token, me.account), me };
  }

  private at<T>(method: string, path: string, body?: unknown): Promise<T> {
    return call<T>(this.token, method, `/accounts/${encodeURIComponent(this.account)}${path}`, body);
  }

  get<T>(path: string): Promise<T> {
    return this.at<T>("GET", path);
  }
  post<T>(path: string, body: unknown): Promise<T> {
    return this.at<T>("POST", path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.at<T>("PATCH", path, body);
  }
  put(path: string): Promise<void> {
    return this.at<void>("PUT", path);
  }
  delete(path: string): Promise<void> {
    return this.at<void>("DELETE", path);
  }
}

/** "tcp/443", "udp/5000-5100", "icmp" from a filter as the API answers it. */
export function filterText(filter: unknown): string {
  if (typeof filter === "string") return filter;
  if (filter && typeof filter === "object") {
    const f = filter as { protocol?: string; ports?: unknown; port_range?: unknown };
    const ports = f.ports ?? f.port_range;
    if (Array.isArray(ports)) return `${f.protocol}/${ports[0] === ports[1] ? ports[0] : `${ports[0]}-${ports[1]}`}`;
    if (ports && typeof ports === "object") {
      const p = ports as { start?: number; end?: number };
      return `${f.protocol}/${p.start === p.end ? p.start : `${p.start}-${p.end}`}`;
    }
    return String(f.protocol ?? "?");
  }
  return String(filter);
}

/** How to name a user: a service account's email is made up, its name is what the admin chose. */
export function userLabel(user: User): string {
  return user.kind === "service" ? `${user.name} (service account)` : user.email;
}
