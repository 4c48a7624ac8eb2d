// Part of `npm run build` and `npm run bundle`: copies the console's page, script, stylesheet and icon
// (lib/console/, served as they are: tsc compiles only TypeScript) to dist/lib/console/, where the compiled
// route (dist/lib/routes/console.js) looks for them.
import { cp } from 'node:fs/promises';

await cp('lib/console', 'dist/lib/console', { recursive: true });
