import { useId, useState } from "preact/hooks";

import { api, type ManagementKey } from "../api";
import { Badge, Button, Card, DataTable, DeleteKeyDialog, Dialog, DoneActions, EmptyState, ErrorNotice, Field, FormActions, Loaded, Notice, PageHeader, SecretOnce, useAction, useResource } from "../components";
import { when } from "../format";

export function ManagementKeysPage() {
  const keys = useResource(() => api.get<ManagementKey[]>("api/management-keys"));
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<ManagementKey>();
  const [message, setMessage] = useState<string>();
  return (
    <>
      <PageHeader
        title="Management keys"
        description={<>Keys (<code>mk_…</code>) for scripts that manage this account through <code>/api</code>: create API keys, subscribe, read usage. Treat them like a password.</>}
        actions={
          <Button variant="primary" onClick={() => setCreating(true)}>
            Create management key
          </Button>
        }
      />
      {message ? <Notice kind="success">{message}</Notice> : null}
      <Card>
        <Loaded resource={keys} label="your management keys">
          {(list) =>
            list.length === 0 ? (
              <EmptyState title="No management keys">
                <p>You are signed in with your email. Create a management key for scripts and CI that call /api.</p>
                <Button variant="primary" small onClick={() => setCreating(true)}>
                  Create management key
                </Button>
              </EmptyState>
            ) : (
            <DataTable
              caption="Your management keys"
              columns={["Name", "Key", "Created", { label: "Actions", hidden: true }]}
              note={list.length <= 1 ? <p class="hint table-note">The last management key cannot be deleted: create another one first.</p> : null}
            >
                  {list.map((key) => (
                    <tr key={key.id}>
                      <th scope="row" class="cell-name">
                        {key.name} {key.current ? <Badge tone="blue">In use here</Badge> : null}
                      </th>
                      <td>
                        <code class="prefix">{key.prefix}…</code>
                      </td>
                      <td>{when(key.createdAt)}</td>
                      <td class="cell-actions">
                        <Button
                          small
                          variant="danger"
                          disabled={list.length <= 1}
                          title={list.length <= 1 ? "An account keeps at least one management key" : undefined}
                          aria-label={`Delete ${key.name}`}
                          onClick={() => {
                            setMessage(undefined);
                            setDeleting(key);
                          }}
                        >
                          Delete
                        </Button>
                      </td>
                    </tr>
                  ))}
                </DataTable>
            )
          }
        </Loaded>
      </Card>
      <CreateManagementKeyDialog open={creating} onClose={() => setCreating(false)} onCreated={() => void keys.reload()} />
      {deleting ? (
        <DeleteKeyDialog
          apiKey={deleting}
          path="api/management-keys"
          consequence="API keys it created keep working."
          onClose={() => setDeleting(undefined)}
          onDeleted={() => {
            setMessage(`${deleting.name} is deleted: scripts using it are refused from now on.`);
            setDeleting(undefined);
            void keys.reload();
          }}
        />
      ) : null}
    </>
  );
}

function CreateManagementKeyDialog({ open, onClose, onCreated }: { open: boolean; onClose: () => void; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [created, setCreated] = useState<{ id: string; name: string; managementKey: string }>();
  const { busy, error, run, clearError } = useAction();
  const id = useId();
  const close = () => {
    setName("");
    setCreated(undefined);
    clearError();
    onClose();
  };
  const submit = async (event: Event) => {
    event.preventDefault();
    const key = await run(() => api.post<{ id: string; name: string; managementKey: string }>("api/management-keys", { name: name.trim() }));
    if (key) {
      setCreated(key);
      onCreated();
    }
  };
  return (
    <Dialog title={created ? "Your new management key" : "Create management key"} open={open} onClose={close}>
      {created ? (
        <>
          <SecretOnce label={`Management key ${created.name}`} secret={created.managementKey} note={<>Send it as <code>Authorization: Bearer …</code> to <code>/api</code>.</>} />
          <DoneActions onDone={close} />
        </>
      ) : (
        <form onSubmit={submit}>
          <Field label="Name" id={id} hint="Where it is used, e.g. ci-deploy.">
            <input autoFocus id={id} required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={`${id}-hint`} />
          </Field>
          <ErrorNotice error={error} title="Could not create the key." />
          <FormActions onCancel={close} submitLabel="Create key" busy={busy} />
        </form>
      )}
    </Dialog>
  );
}

