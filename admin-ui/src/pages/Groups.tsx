import { useCallback, useState } from "react";
import { type Api, type Group, type User, userLabel } from "../api";
import { act, useLoad } from "../load";

export function Groups({ api }: { api: Api }) {
  const groups = useLoad(useCallback(() => api.get<Group[]>("/groups"), [api]));
  const users = useLoad(useCallback(() => api.get<User[]>("/users"), [api]));
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [adding, setAdding] = useState<Record<string, string>>({});
  const reload = groups.reload;
  const who = (id: string) => ((u) => (u ? userLabel(u) : id))(users.data?.find((u) => u.id === id));

  return (
    <section>
      <h2>Groups and members</h2>
      {(error ?? groups.error) && <p className="error" role="alert">{error ?? groups.error}</p>}
      <table>
        <thead>
          <tr><th>Group</th><th>Members</th><th></th></tr>
        </thead>
        <tbody>
          {groups.data?.map((g) => (
            <tr key={g.id}>
              <td>{g.name}</td>
              <td>
                <ul className="plain">
                  {g.members.map((m) => (
                    <li key={m}>
                      {who(m)} <button onClick={() => void act(() => api.delete(`/groups/${g.id}/members/${m}`), reload, setError)}>Remove</button>
                    </li>
                  ))}
                </ul>
                <select value={adding[g.id] ?? ""} onChange={(e) => setAdding({ ...adding, [g.id]: e.target.value })}>
                  <option value="">add a member…</option>
                  {users.data?.filter((u) => !g.members.includes(u.id)).map((u) => (
                    <option key={u.id} value={u.id}>{userLabel(u)}</option>
                  ))}
                </select>
                <button disabled={!adding[g.id]} onClick={() => void act(() => api.put(`/groups/${g.id}/members/${adding[g.id]}`), reload, setError)}>
                  Add
                </button>
              </td>
              <td className="actions">
                <button
                  onClick={() => {
                    const renamed = prompt("New name", g.name);
                    if (renamed) void act(() => api.patch(`/groups/${g.id}`, { name: renamed }), reload, setError);
                  }}
                >
                  Rename
                </button>
                <button className="danger" onClick={() => confirm(`Delete ${g.name} and its policies?`) && void act(() => api.delete(`/groups/${g.id}`), reload, setError)}>
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
          void act(() => api.post("/groups", { name }), () => {
            setName("");
            reload();
          }, setError);
        }}
      >
        <h3>New group</h3>
        <input placeholder="name" value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" disabled={!name}>Create</button>
      </form>
    </section>
  );
}
