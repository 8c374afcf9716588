import type { Metadata } from "next";
import { ParityPage } from "@/components/parity/parity-page";

export const metadata: Metadata = { title: "Parity" };

export default async function Page({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <ParityPage planId={planId} />;
}
