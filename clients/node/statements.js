// What a statement does to the transaction block, read from its first keywords (comments and
// whitespace skipped). The helpers track each connection's block by the order statements are
// sent in, which is the order the server runs them.

const LEADING_NOISE = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;

/** 'begin', 'end' (COMMIT, ROLLBACK, END, ABORT, PREPARE TRANSACTION) or null for the rest. */
export function transactionEffect(text) {
  const words = String(text).replace(LEADING_NOISE, '').slice(0, 64).toUpperCase().split(/[\s;]+/);
  switch (words[0]) {
    case 'BEGIN':
      return 'begin';
    case 'START':
      return words[1] === 'TRANSACTION' ? 'begin' : null;
    case 'COMMIT':
    case 'END':
    case 'ABORT':
      // COMMIT PREPARED / ROLLBACK PREPARED act on another, prepared transaction.
      return words[1] === 'PREPARED' ? null : 'end';
    case 'ROLLBACK':
      return words[1] === 'PREPARED' || words[1] === 'TO' ? null : 'end';
    case 'PREPARE':
      return words[1] === 'TRANSACTION' ? 'end' : null;
    default:
      return null;
  }
}
