import "./styles.css";

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { api, ApiError, onSignedOut } from "./api";
import { Button, ErrorNotice, Loading } from "./components";
import { BillingPage } from "./pages/billing";
import { KeysPage } from "./pages/keys";
import { ManagementKeysPage } from "./pages/management";
import { OverviewPage } from "./pages/overview";
import { SignInPage } from "./pages/signin";
import { UsagePage } from "./pages/usage";

const ROUTES = [
  { path: "/", label: "Overview", page: OverviewPage, icon: "M3 12l9-8 9 8v8a1 1 0 0 1-1 1h-5v-6H9v6H4a1 1 0 0 1-1-1z" },
  { path: "/keys", label: "API keys", page: KeysPage, icon: "M15 7a4 4 0 1 1-3.9 4.9L4 19v-3h2v-2h2l2.1-2.1A4 4 0 0 1 15 7z" },
  { path: "/management-keys", label: "Management keys", page: ManagementKeysPage, icon: "M12 3l8 3v6c0 4.5-3.4 8.3-8 9-4.6-.7-8-4.5-8-9V6z" },
  { path: "/usage", label: "Usage", page: UsagePage, icon: "M4 20V10m6 10V4m6 16v-7m5 7H3" },
  { path: "/billing", label: "Billing", page: BillingPage, icon: "M3 7h18v10H3zM3 11h18M7 15h3" },
] as const;

/** The route from the fragment: "#/keys" -> "/keys" (hash routes: the document is always "/"). */
function currentPath(): string {
  const path = window.location.hash.replace(/^#/, "").split("?")[0] || "/";
  return ROUTES.some((route) => route.path === path) ? path : "/";
}

type Session = { state: "checking" } | { state: "signedOut"; reason?: string } | { state: "signedIn" } | { state: "failed"; error: ApiError };

function App() {
  const [session, setSession] = useState<Session>({ state: "checking" });
  const [path, setPath] = useState(currentPath);

  const check = async () => {
    setSession({ state: "checking" });
    try {
      await api.get("api/billing/status");
      setSession({ state: "signedIn" });
    } catch (error) {
      const apiError = error instanceof ApiError ? error : new ApiError(0, "client_error", String(error));
      setSession(apiError.status === 401 ? { state: "signedOut" } : { state: "failed", error: apiError });
    }
  };

  useEffect(() => {
    void check();
    const onHash = () => setPath(currentPath());
    window.addEventListener("hashchange", onHash);
    const stop = onSignedOut(() => setSession({ state: "signedOut", reason: "Your session ended. Sign in again to continue." }));
    return () => {
      window.removeEventListener("hashchange", onHash);
      stop();
    };
  }, []);

  if (session.state === "checking") {
    return (
      <main class="center-screen">
        <Loading label="Loading the dashboard…" />
      </main>
    );
  }
  if (session.state === "failed") {
    return (
      <main class="center-screen">
        <div class="auth-card">
          <ErrorNotice error={session.error} title="The dashboard could not reach the API." />
          <Button variant="primary" onClick={check}>
            Try again
          </Button>
        </div>
      </main>
    );
  }
  if (session.state === "signedOut") {
    return <SignInPage reason={session.reason} onSignedIn={() => setSession({ state: "signedIn" })} />;
  }
  const route = ROUTES.find((candidate) => candidate.path === path) ?? ROUTES[0];
  const Page = route.page;
  return (
    <div class="shell">
      <a class="skip-link" href="#main" onClick={(event) => {
        event.preventDefault();
        document.getElementById("main")?.focus();
      }}>
        Skip to content
      </a>
      <Sidebar path={path} onSignedOut={() => setSession({ state: "signedOut", reason: "You are signed out." })} />
      <main id="main" class="main" tabIndex={-1}>
        <Page key={path} />
      </main>
    </div>
  );
}

function Sidebar({ path, onSignedOut: signedOut }: { path: string; onSignedOut: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const signOut = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await api.post("api/auth/logout");
      signedOut();
    } catch (caught) {
      setError(caught instanceof ApiError ? caught : new ApiError(0, "client_error", String(caught)));
    } finally {
      setBusy(false);
    }
  };
  return (
    <aside class="sidebar">
      <div class="brand">
        <img src="assets/icon.svg" alt="" width={28} height={28} />
        <span>Inference Platform</span>
      </div>
      <nav aria-label="Dashboard">
        <ul>
          {ROUTES.map((route) => (
            <li key={route.path}>
              <a href={`#${route.path}`} aria-current={route.path === path ? "page" : undefined} class="nav-link">
                <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
                  <path d={route.icon} fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" />
                </svg>
                {route.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="sidebar-footer">
        <a class="nav-link nav-secondary" href="assets/openapi.json" target="_blank" rel="noopener">
          API reference
        </a>
        <ErrorNotice error={error} title="Could not sign out." />
        <Button variant="ghost" busy={busy} onClick={signOut} class="signout">
          Sign out
        </Button>
      </div>
    </aside>
  );
}

const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(<App />, root);
}
