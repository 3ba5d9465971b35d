// An unmodified AceBase process on berth's IPC hub, for acebase_test.go.
// Usage: node acebase-peer.js DBDIR PORT ROLE
// It prints "ready" once its database is open. On a line "watch" on stdin
// it watches "shared" and prints "seen VALUE" for every value it sees; on
// "write VALUE" it sets "shared" to VALUE and prints "wrote VALUE".
// AceBase's remote IPC client sends no hello when it connects, so a peer
// learns only the subscriptions made while it is connected: the test
// watches once both processes are up. AceBase itself prints every IPC
// frame it receives on stdout.
const { AceBase } = require('acebase');
const readline = require('readline');

const [dir, port, role] = process.argv.slice(2);
const db = new AceBase('e2e', {
    logLevel: 'error',
    storage: { path: dir, ipc: { host: '127.0.0.1', port: Number(port), role } },
});
const out = (line) => process.stderr.write(line + '\n');
db.ready().then(async () => {
    out('ready');
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', async (line) => {
        const [cmd, value] = line.split(' ');
        if (cmd === 'watch') {
            db.ref('shared').on('value', (snap) => {
                if (snap.exists()) out('seen ' + snap.val());
            });
            out('watching');
        } else if (cmd === 'write') {
            await db.ref('shared').set(value);
            out('wrote ' + value);
        }
    });
    rl.on('close', () => process.exit(0));
});
