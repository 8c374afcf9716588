import type { Metadata } from "next";
import { RoutingPage } from "@/components/routing/routing-page";

export const metadata: Metadata = { title: "Routing" };

export default async function Page({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <RoutingPage planId={planId} />;
}
