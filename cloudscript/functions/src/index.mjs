// The function app's entry point (package.json "main"): registers the cubecache functions with the Azure
// Functions host. Only this file needs @azure/functions; the handlers themselves are in cubecache.mjs.
import { app } from '@azure/functions';
import { register } from './cubecache.mjs';

register(app, process.env);
