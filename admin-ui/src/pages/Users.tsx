import { useCallback, useState } from "react";
import type { Api, IssuedToken, Online, User } from "../api";
import { act, useLoad } from "../load";

export function Users({ api }: { api: Api }) {
  const users = useLoad(useCallback(() => api.get<User[]>("/users"), [api]));
  const online = useLoad(useCallback(() => api.get<Online>("/online"), [api]), 3000);
  const devicesOf = (userId: string) => online.data?.devices.filter((d) => d.user_id === userId) ?? [];
  const [error, setError] = useState<string | null>(null);
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);
  const [service, setService] = useState("");
  const [issued, setIssued] = useState<string | null>(null);
  const reload = users.reload;

  return (
    <section>
      <h2>Users and service accounts</h2>
      {(error ?? users.error) && <p className="error" role="alert">{error ?? users.error}</p>}
      {issued && (
        <p className="issued">
          New client token (shown once): <code>{issued}</code> <button onClick={() => setIssued(null)}>Hide</button>
        </p>
      )}
      <table>
        <thead>
          <tr><th>Email</th><th>Name</th><th>Kind</th><th>State</th><th>Devices online</th><th></th></tr>
        </thead>
        <tbody>
          {users.data?.map((u) => (
            <tr key={u.id}>
              <td>{u.kind === "service" ? "—" : u.email}</td>
              <td>{u.name}</td>
              <td>{u.kind}{u.admin ? " · admin" : ""}</td>
              <td>{u.disabled ? "disabled" : "active"}</td>
              <td className={devicesOf(u.id).length ? "online" : "offline"} data-testid={`devices-${u.name}`}>
                {devicesOf(u.id).map((d) => d.device_id).join(", ") || "none"}
              </td>
              <td className="actions">
                <button onClick={() => void act(() => api.post(`/users/${u.id}/${u.disabled ? "enable" : "disable"}`, {}), reload, setError)}>
                  {u.disabled ? "Enable" : "Disable"}
                </button>
                {u.kind !== "service" && (
                  <button onClick={() => void act(() => api.patch(`/users/${u.id}`, { admin: !u.admin }), reload, setError)}>
                    {u.admin ? "Revoke admin" : "Make admin"}
                  </button>
                )}
                {u.kind === "service" && (
                  <button onClick={() => void act(async () => setIssued((await api.post<IssuedToken>(`/service-accounts/${u.id}/tokens`, {})).token), reload, setError)}>
                    New token
                  </button>
                )}
                <button onClick={() => void act(() => api.post(`/users/${u.id}/revoke-tokens`, {}), reload, setError)}>Sign out everywhere</button>
                <button className="danger" onClick={() => confirm(`Delete ${u.email}?`) && void act(() => api.delete(`/users/${u.id}`), reload, setError)}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void act(() => api.post("/users", { email, name, admin }), () => {
            setEmail("");
            setName("");
            setAdmin(false);
            reload();
          }, setError);
        }}
      >
        <h3>New user</h3>
        <input placeholder="email" value={email} onChange={(e) => setEmail(e.target.value)} />
        <input placeholder="name" value={name} onChange={(e) => setName(e.target.value)} />
        <label><input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} /> admin</label>
        <button type="submit" disabled={!email || !name}>Create</button>
      </form>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void act(async () => {
            const made = await api.post<{ token: IssuedToken }>("/service-accounts", { name: service });
            setIssued(made.token.token);
          }, () => {
            setService("");
            reload();
          }, setError);
        }}
      >
        <h3>New service account</h3>
        <input placeholder="name" value={service} onChange={(e) => setService(e.target.value)} />
        <button type="submit" disabled={!service}>Create</button>
      </form>
    </section>
  );
}
