import { useCallback, useState } from "react";
import type { Api, Gateway, IssuedToken, Online, Site } from "../api";
import { act, useLoad } from "../load";

export function Sites({ api }: { api: Api }) {
  const sites = useLoad(useCallback(() => api.get<Site[]>("/sites"), [api]));
  const gateways = useLoad(useCallback(() => api.get<Gateway[]>("/gateways"), [api]));
  const online = useLoad(useCallback(() => api.get<Online>("/online"), [api]), 3000);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [gatewayName, setGatewayName] = useState<Record<string, string>>({});
  const [issued, setIssued] = useState<string | null>(null);
  const reload = () => {
    sites.reload();
    gateways.reload();
  };
  const connected = (id: string) => online.data?.gateways.find((g) => g.gateway_id === id);

  return (
    <section>
      <h2>Sites and gateways</h2>
      {(error ?? sites.error) && <p className="error" role="alert">{error ?? sites.error}</p>}
      {issued && (
        <p className="issued">
          New gateway token (shown once): <code>{issued}</code> <button onClick={() => setIssued(null)}>Hide</button>
        </p>
      )}
      {sites.data?.map((s) => (
        <article key={s.id} className="site">
          <h3>
            {s.name}{" "}
            <button
              onClick={() => {
                const renamed = prompt("New name", s.name);
                if (renamed) void act(() => api.patch(`/sites/${s.id}`, { name: renamed }), reload, setError);
              }}
            >
              Rename
            </button>
            <button className="danger" onClick={() => confirm(`Delete ${s.name} with its resources and gateways?`) && void act(() => api.delete(`/sites/${s.id}`), reload, setError)}>
              Delete
            </button>
          </h3>
          <table>
            <thead>
              <tr><th>Gateway</th><th>State</th><th></th></tr>
            </thead>
            <tbody>
              {gateways.data?.filter((g) => g.site_id === s.id).map((g) => {
                const live = connected(g.id);
                return (
                  <tr key={g.id} data-testid={`gateway-${g.name}`}>
                    <td>{g.name}</td>
                    <td className={live ? "online" : "offline"}>{live ? `online · ${live.connections} connections` : "offline"}</td>
                    <td className="actions">
                      <button onClick={() => void act(async () => setIssued((await api.post<IssuedToken>(`/gateways/${g.id}/tokens`, {})).token), reload, setError)}>New token</button>
                      <button className="danger" onClick={() => confirm(`Delete ${g.name}?`) && void act(() => api.delete(`/gateways/${g.id}`), reload, setError)}>
                        Delete
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void act(async () => {
                const made = await api.post<{ token: IssuedToken }>("/gateways", { site_id: s.id, name: gatewayName[s.id] });
                setIssued(made.token.token);
              }, () => {
                setGatewayName({ ...gatewayName, [s.id]: "" });
                reload();
              }, setError);
            }}
          >
            <input placeholder="new gateway name" value={gatewayName[s.id] ?? ""} onChange={(e) => setGatewayName({ ...gatewayName, [s.id]: e.target.value })} />
            <button type="submit" disabled={!gatewayName[s.id]}>Add gateway</button>
          </form>
        </article>
      ))}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void act(() => api.post("/sites", { name }), () => {
            setName("");
            reload();
          }, setError);
        }}
      >
        <h3>New site</h3>
        <input placeholder="name" value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" disabled={!name}>Create</button>
      </form>
    </section>
  );
}
