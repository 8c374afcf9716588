import type { Metadata } from "next";
import { Suspense } from "react";
import { SignInForm } from "@/components/layout/sign-in-form";
import { DEMO_USERS } from "@/server/services/users/users";

export const metadata: Metadata = { title: "Sign in" };
export const dynamic = "force-dynamic";

export default function SignInPage() {
  // The demo prints its accounts too; showing them here saves a newcomer a trip to the terminal.
  const demoAccounts = process.env.SHARDSHIFT_DEMO === "1" ? DEMO_USERS : [];
  return (
    <main className="grid min-h-screen place-items-center px-4">
      <div className="w-full max-w-sm">
        <div className="mb-6 text-center">
          <div
            aria-hidden
            className="mx-auto mb-3 grid size-10 place-items-center rounded-lg bg-sky-700 font-semibold text-white"
          >
            S
          </div>
          <h1 className="text-lg font-semibold">Sign in to Shardshift</h1>
          <p className="mt-1 text-sm text-slate-600">
            Tenant-keyed sharding with no downtime and no lost writes.
          </p>
        </div>
        <Suspense>
          <SignInForm
            demoAccounts={demoAccounts.map(({ email, password, role }) => ({ email, password, role }))}
          />
        </Suspense>
      </div>
    </main>
  );
}
