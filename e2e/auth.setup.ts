import { test as setup } from "@playwright/test";
import { type Role, signInWithForm, storageStatePath } from "./helpers";

for (const role of ["admin", "operator", "viewer"] as Role[]) {
  setup(`sign in as ${role}`, async ({ page }) => {
    await signInWithForm(page, role);
    await page.context().storageState({ path: storageStatePath(role) });
  });
}
