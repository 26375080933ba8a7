import { useCallback, useState } from "react";
import { type Api, type Gateway, type Online, type Resource, type Site, type User, filterText, userLabel } from "../api";
import { act, useLoad } from "../load";

interface Draft {
  id: string | null;
  site_id: string;
  name: string;
  address: string;
  description: string;
  filters: string;
}

const EMPTY: Draft = { id: null, site_id: "", name: "", address: "", description: "", filters: "" };

export function Resources({ api }: { api: Api }) {
  const resources = useLoad(useCallback(() => api.get<Resource[]>("/resources"), [api]));
  const sites = useLoad(useCallback(() => api.get<Site[]>("/sites"), [api]));
  const gateways = useLoad(useCallback(() => api.get<Gateway[]>("/gateways"), [api]));
  const users = useLoad(useCallback(() => api.get<User[]>("/users"), [api]));
  const online = useLoad(useCallback(() => api.get<Online>("/online"), [api]), 3000);
  const [error, setError] = useState<string | null>(null);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const reload = resources.reload;

  const siteName = (id: string) => sites.data?.find((s) => s.id === id)?.name ?? id;
  const grantsOf = (resourceId: string) =>
    (online.data?.devices ?? []).flatMap((d) =>
      d.grants
        .filter((g) => g.resource_ids.includes(resourceId))
        .map((g) => ({
          device: d.device_id,
          user: ((u) => (u ? userLabel(u) : d.user_id))(users.data?.find((u) => u.id === d.user_id)),
          gateway: gateways.data?.find((x) => x.id === g.gateway_id)?.name ?? g.gateway_id,
        })),
    );
  const save = () => {
    const body = {
      site_id: draft.site_id || sites.data?.[0]?.id,
      name: draft.name,
      address: draft.address,
      description: draft.description || undefined,
      filters: draft.filters.split(/[\s,]+/).filter(Boolean),
    };
    return draft.id ? api.patch(`/resources/${draft.id}`, body) : api.post("/resources", body);
  };

  return (
    <section>
      <h2>Resources</h2>
      {(error ?? resources.error) && <p className="error" role="alert">{error ?? resources.error}</p>}
      <p className="note">Devices online: {online.data?.devices.length ?? "…"} · gateways online: {online.data?.gateways.length ?? "…"}</p>
      <table className="resources">
        <thead>
          <tr><th>Name</th><th>Address</th><th>Filters</th><th>Site</th><th>Held by (now)</th><th></th></tr>
        </thead>
        <tbody>
          {resources.data?.map((r) => {
            const grants = grantsOf(r.id);
            return (
              <tr key={r.id} data-testid={`resource-${r.name}`}>
                <td>{r.name}{r.description ? <small> {r.description}</small> : null}</td>
                <td>{r.address}</td>
                <td>{r.filters.length ? r.filters.map(filterText).join(", ") : "all"}</td>
                <td>{siteName(r.site_id)}</td>
                <td>
                  {grants.length === 0 ? "—" : (
                    <ul className="plain">
                      {grants.map((g) => <li key={`${g.device}-${g.gateway}`}>{g.user} ({g.device}) via {g.gateway}</li>)}
                    </ul>
                  )}
                </td>
                <td className="actions">
                  <button
                    onClick={() =>
                      setDraft({ id: r.id, site_id: r.site_id, name: r.name, address: r.address, description: r.description ?? "", filters: r.filters.map(filterText).join(", ") })
                    }
                  >
                    Edit
                  </button>
                  <button className="danger" onClick={() => confirm(`Delete ${r.name}?`) && void act(() => api.delete(`/resources/${r.id}`), reload, setError)}>
                    Delete
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <form
        data-testid="resource-form"
        onSubmit={(e) => {
          e.preventDefault();
          void act(save, () => {
            setDraft(EMPTY);
            reload();
          }, setError);
        }}
      >
        <h3>{draft.id ? `Edit ${draft.name}` : "New resource"}</h3>
        <select name="site" value={draft.site_id} onChange={(e) => setDraft({ ...draft, site_id: e.target.value })}>
          {sites.data?.map((s) => <option key={s.id} value={s.id}>{s.name}</option>)}
        </select>
        <input name="name" placeholder="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} />
        <input name="address" placeholder="address: host, *.wildcard, IP or CIDR" value={draft.address} onChange={(e) => setDraft({ ...draft, address: e.target.value })} />
        <input name="filters" placeholder="filters: tcp/443, udp/53, icmp (empty: all)" value={draft.filters} onChange={(e) => setDraft({ ...draft, filters: e.target.value })} />
        <input name="description" placeholder="description" value={draft.description} onChange={(e) => setDraft({ ...draft, description: e.target.value })} />
        <button type="submit" className="primary" disabled={!draft.name || !draft.address}>{draft.id ? "Save" : "Create"}</button>
        {draft.id && <button type="button" onClick={() => setDraft(EMPTY)}>Cancel</button>}
      </form>
    </section>
  );
}
