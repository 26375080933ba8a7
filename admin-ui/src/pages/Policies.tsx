import { useCallback, useState } from "react";
import type { Api, Group, Policy, Resource } from "../api";
import { act, useLoad } from "../load";

export function Policies({ api }: { api: Api }) {
  const policies = useLoad(useCallback(() => api.get<Policy[]>("/policies"), [api]));
  const groups = useLoad(useCallback(() => api.get<Group[]>("/groups"), [api]));
  const resources = useLoad(useCallback(() => api.get<Resource[]>("/resources"), [api]));
  const [error, setError] = useState<string | null>(null);
  const [group, setGroup] = useState("");
  const [resource, setResource] = useState("");
  const reload = policies.reload;
  const groupName = (id: string) => groups.data?.find((g) => g.id === id)?.name ?? id;
  const resourceName = (id: string) => resources.data?.find((r) => r.id === id)?.name ?? id;

  return (
    <section>
      <h2>Policies</h2>
      <p className="note">A policy lets every member of a group reach a resource.</p>
      {(error ?? policies.error) && <p className="error" role="alert">{error ?? policies.error}</p>}
      <table className="policies">
        <thead>
          <tr><th>Group</th><th>Resource</th><th></th></tr>
        </thead>
        <tbody>
          {policies.data?.map((p) => (
            <tr key={p.id} data-testid={`policy-${groupName(p.group_id)}-${resourceName(p.resource_id)}`}>
              <td>{groupName(p.group_id)}</td>
              <td>{resourceName(p.resource_id)}</td>
              <td className="actions">
                <button className="danger" onClick={() => void act(() => api.delete(`/policies/${p.id}`), reload, setError)}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        data-testid="policy-form"
        onSubmit={(e) => {
          e.preventDefault();
          void act(() => api.post("/policies", { group_id: group, resource_id: resource }), () => {
            setGroup("");
            setResource("");
            reload();
          }, setError);
        }}
      >
        <h3>New policy</h3>
        <select name="group" value={group} onChange={(e) => setGroup(e.target.value)}>
          <option value="">group…</option>
          {groups.data?.map((g) => <option key={g.id} value={g.id}>{g.name}</option>)}
        </select>
        <select name="resource" value={resource} onChange={(e) => setResource(e.target.value)}>
          <option value="">resource…</option>
          {resources.data?.map((r) => <option key={r.id} value={r.id}>{r.name}</option>)}
        </select>
        <button type="submit" className="primary" disabled={!group || !resource}>Create</button>
      </form>
    </section>
  );
}
