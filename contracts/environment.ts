// The only place rescale reads environment variables; everything else receives parsed settings.

import { RescaleError } from './errors.js';

/** RESCALE_LLAMA_BUILD: "auto" (default: a `npm run build:llama` build when present) or "prebuilt". */
export function llamaBuildFromEnvironment(): 'auto' | 'prebuilt' {
  const value = process.env.RESCALE_LLAMA_BUILD ?? 'auto';
  if (value !== 'auto' && value !== 'prebuilt') {
    throw new RescaleError('CONFIG_INVALID', `environment variable RESCALE_LLAMA_BUILD is "${value}"; use "auto" or "prebuilt"`);
  }
  return value;
}
