"use client";

import { createAuthClient } from "better-auth/react";

// Same origin as the page: works whether the console is opened as localhost or 127.0.0.1.
export const authClient = createAuthClient();
