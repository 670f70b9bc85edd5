// Public surface of src/config: loading, validation results and the config types.

export {
  ADMIN_ROLES,
  type AdminRole,
  type AdminToken,
  parseTokenFile,
  roleAllows,
  tokenDigest,
} from './admin-tokens.ts';
export { type LoadedConfig, loadConfigFile, loadConfigText, readConfigText, SCHEMA_URL } from './load.ts';
export { type SecretFileWarning, secretFileWarnings } from './secret-files.ts';
export type * from './types.ts';
export { ANY_SOURCE, isIpSetName, type ResolvedExtras, type TlsMaterial } from './validate.ts';
export { formatKeyPath, type KeyPathStep } from './yaml-positions.ts';
