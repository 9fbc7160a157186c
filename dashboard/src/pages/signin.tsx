import { useEffect, useRef, useState } from "preact/hooks";

import { api } from "../api";
import { Button, ErrorNotice, Field, Notice, useAction } from "../components";

/** One flow for sign-up and sign-in: an email, then the 6-digit code mailed to it (SPEC 8). */
export function SignInPage({ reason, onSignedIn }: { reason?: string; onSignedIn: () => void }) {
  const [email, setEmail] = useState("");
  const [code, setCode] = useState("");
  const [step, setStep] = useState<"email" | "code">("email");
  const [resent, setResent] = useState(false);
  const { busy, error, run, clearError } = useAction();
  const codeInput = useRef<HTMLInputElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    document.title = "Sign in · Inference Platform";
    heading.current?.focus({ preventScroll: true });
  }, []);
  useEffect(() => {
    if (step === "code") codeInput.current?.focus();
  }, [step]);

  const start = async (event: Event) => {
    event.preventDefault();
    const sent = await run(() => api.post("api/auth/email/start", { email: email.trim() }));
    if (sent !== undefined) setStep("code");
  };
  const verify = async (event: Event) => {
    event.preventDefault();
    const verified = await run(() => api.post("api/auth/email/verify", { email: email.trim(), code: code.trim() }));
    if (verified !== undefined) {
      window.location.hash = "#/";
      onSignedIn();
    }
  };

  return (
    <main class="center-screen auth-screen">
      <div class="auth-card">
        <div class="brand brand-large">
          <img src="assets/icon.svg" alt="" width={36} height={36} />
          <span>Inference Platform</span>
        </div>
        <h1 ref={heading} tabIndex={-1}>
          {step === "email" ? "Sign in or create an account" : "Check your email"}
        </h1>
        {reason && step === "email" ? <Notice>{reason}</Notice> : null}
        {step === "email" ? (
          <form onSubmit={start} noValidate={false}>
            <p class="muted">We will email you a 6-digit code. New here? The same code creates your account.</p>
            <Field label="Email" id="signin-email">
              <input
                id="signin-email"
                type="email"
                required
                autoComplete="email"
                value={email}
                onInput={(e) => setEmail(e.currentTarget.value)}
                placeholder="you@company.com"
              />
            </Field>
            <ErrorNotice error={error} title="Could not send the code." />
            <Button type="submit" variant="primary" busy={busy} class="btn-block">
              Send code
            </Button>
          </form>
        ) : (
          <form onSubmit={verify}>
            <p class="muted">
              We sent a code to <strong>{email.trim()}</strong>. It works once and expires after a few minutes.
            </p>
            <Field label="Code" id="signin-code" hint="6 digits">
              <input
                id="signin-code"
                ref={codeInput}
                required
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9]{6}"
                maxLength={6}
                class="code-input mono"
                aria-describedby="signin-code-hint"
                value={code}
                onInput={(e) => setCode(e.currentTarget.value.replace(/\D/g, ""))}
              />
            </Field>
            {resent ? <Notice kind="success">A new code is on its way. The previous one no longer works.</Notice> : null}
            <ErrorNotice error={error} title="Could not sign in." />
            <Button type="submit" variant="primary" busy={busy} class="btn-block">
              Sign in
            </Button>
            <div class="auth-links">
              <button
                type="button"
                class="link-btn"
                onClick={() => {
                  clearError();
                  setCode("");
                  setResent(false);
                  setStep("email");
                }}
              >
                Use a different email
              </button>
              <button type="button" class="link-btn" disabled={busy} onClick={async () => {
                  setResent(false);
                  const sent = await run(() => api.post("api/auth/email/start", { email: email.trim() }));
                  if (sent !== undefined) setResent(true);
                }}>
                Send a new code
              </button>
            </div>
          </form>
        )}
      </div>
    </main>
  );
}
