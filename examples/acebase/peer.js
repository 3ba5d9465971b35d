// An unmodified AceBase process run by berth, sharing one database with
// the other processes of its IPC group through the lanmanager's IPC hub.
//
//   node peer.js DBDIR ROLE      (ROLE: master or worker; one master per group)
//
// berth gives it BERTH_IPC_HOST, BERTH_IPC_PORT, BERTH_IPC_TOKEN and
// BERTH_IPC_GROUP; AceBase's storage.ipc takes them as they are (dbname
// names the hub group). It serves HTTP on BERTH_HOST:BERTH_PORT_HTTP:
//   POST /set?v=VALUE   sets "shared" to VALUE
//   GET  /get           reads "shared" from the database
//   GET  /seen          the last value a change event brought (events of
//                       other processes arrive only through the hub)
//   POST /watch         subscribes again. AceBase tells the peers connected
//                       at that moment what it subscribes to, and a peer
//                       that connects later never learns it: call this once
//                       every process of the group is up.
const http = require('http');
const { AceBase } = require('acebase');

const [dir, role] = process.argv.slice(2);
const env = process.env;
for (const k of ['BERTH_IPC_HOST', 'BERTH_IPC_PORT', 'BERTH_IPC_GROUP', 'BERTH_HOST', 'BERTH_PORT_HTTP']) {
    if (!env[k]) { console.error(`${k} is not set: run me as a berth need with --protocols http`); process.exit(2); }
}
const db = new AceBase('shared', {
    logLevel: 'warn',
    storage: {
        path: dir,
        ipc: {
            host: env.BERTH_IPC_HOST,
            port: Number(env.BERTH_IPC_PORT),
            token: env.BERTH_IPC_TOKEN,
            dbname: env.BERTH_IPC_GROUP,
            role,
        },
    },
});

let seen = '';
let stream = null;
function watch() {
    if (stream) stream.stop();
    stream = db.ref('shared').on('value', (snap) => {
        if (snap.exists()) {
            seen = String(snap.val());
            console.log(`${env.BERTH_INSTANCE}: seen ${seen}`);
        }
    });
}
db.ready().then(() => {
    watch();
    http.createServer(async (req, res) => {
        const u = new URL(req.url, 'http://x');
        try {
            if (req.method === 'POST' && u.pathname === '/set') {
                await db.ref('shared').set(u.searchParams.get('v'));
                res.end('ok\n');
            } else if (req.method === 'POST' && u.pathname === '/watch') {
                watch();
                res.end('ok\n');
            } else if (u.pathname === '/get') {
                const snap = await db.ref('shared').get();
                res.end(snap.exists() ? String(snap.val()) : '');
            } else if (u.pathname === '/seen') {
                res.end(seen);
            } else {
                res.statusCode = 404;
                res.end('not found\n');
            }
        } catch (e) {
            res.statusCode = 500;
            res.end(String(e) + '\n');
        }
    }).listen(Number(env.BERTH_PORT_HTTP), env.BERTH_HOST, () => {
        console.log(`${env.BERTH_INSTANCE}: ${role} of group ${env.BERTH_IPC_GROUP} on http://${env.BERTH_HOST}:${env.BERTH_PORT_HTTP}`);
    });
});
