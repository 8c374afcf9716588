import type { Metadata } from "next";
import { BreakerPage } from "@/components/breaker/breaker-page";

export const metadata: Metadata = { title: "Breaker" };

export default async function Page({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <BreakerPage planId={planId} />;
}
