// The server and tenants the helper tests use: started by scripts/node_clients.sh, which exports
// the DSNs and the signing secret (base64, as generate_signing_key returned it).
import { mintToken } from '../index.js';

export const APP_DSN = process.env.AGENT_BOUNDARY_APP_DSN;
export const ADMIN_DSN = process.env.AGENT_BOUNDARY_ADMIN_DSN;
export const SECRET = process.env.AGENT_BOUNDARY_SECRET;
export const KID = process.env.AGENT_BOUNDARY_KID;
if (!APP_DSN || !SECRET) throw new Error('run these tests with bash scripts/node_clients.sh');

export const NOTES = 'SELECT body FROM notes ORDER BY body';
export const DENTAL_NOTES = ['dental: crown follow-up'];
export const DESIGN_NOTES = ['design: brand refresh'];
export const NO_BOUNDARY = /no agent boundary is set/;

export function token(tenant, { user = 'alice', role = 'admin', secret = SECRET, ...claims } = {}) {
  return mintToken(secret, KID, { tenant_id: tenant, workspace_id: 'support', user_id: user, role, ...claims });
}

export const dental = () => token('northstar-dental');
export const design = () => token('northstar-design', { role: 'member' });
