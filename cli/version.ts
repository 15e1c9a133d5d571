// rescale's version and install folder, for the CLI.
export { PACKAGE_ROOT, RESCALE_VERSION } from '../contracts/package-root.js';
