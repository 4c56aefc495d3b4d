"""etcd's v3 gRPC API on a dengine node: etcdctl, Go clientv3 and Python etcd clients work as is.

Theory of operation
-------------------
Every node started with ``[etcd_api] listen`` set serves etcd's own services (``etcdserverpb.KV``,
``Watch``, ``Lease``, ``Cluster``, ``Maintenance``; messages generated from etcd's rpc/kv/auth
protos, with etcd's package names and field numbers) on that port. It is a translation layer
onto the node's one request path, never a second one: writes are proposed through the log,
reads wait on the node's read barrier (ReadIndex) and read the KV machine.

Revisions. dengine's revision is the log index of the entry that made a change; etcd's is one
counter across the store. They are the same number here: ``mod_revision`` is the index of the
key's last write, ``create_revision`` of the write that created it, ``version`` counts writes
since then (a delete resets it), and a header's ``revision`` is the index applied on the
answering member (a write's: the index of its entry). Revisions grow with every change, as
etcd's do, but are not dense: entries that change no key (elections' empty entries, membership
changes, lease grants) use indexes too. Every change of one Txn carries its entry's index.

Writes. Put, DeleteRange and Txn all become one ``OP_ETCD_TXN`` log entry (a Put is a Txn with
one success op) applied atomically by :mod:`dengine.etcd.store`: compares, the chosen branch,
nested txns, range deletes, ``prev_kv``, ``ignore_value``/``ignore_lease``, leases. On a
follower, a write (and ``LeaseKeepAlive``/``LeaseTimeToLive``, whose clock is the leader's) is
forwarded to the leader, which serves the same etcd services on its node port; the answer goes
back to the client as the leader gave it.

Reads. ``Range`` is linearizable by default (a follower asks the leader for a read index,
Raft's ReadIndex) and served locally when ``serializable``. A Range at a past revision is
rebuilt from the watch history (``statemachine.history_revisions`` revisions): older than the
window it fails with etcd's "required revision has been compacted"; ahead of the member, with
"required revision is a future revision". ``Compact`` is accepted for any revision in the window
and changes nothing: the history is trimmed by its window, not on request.

Watch maps onto the node's :class:`~dengine.node.watch.WatchHub` (replay from history, then live):
ranges that are not a prefix watch their longest common prefix and filter; ``prev_kv``,
``filters`` (NOPUT, NODELETE), ``progress_notify``, ``progress_request``, client-chosen watch ids
and cancel are supported; ``fragment`` is ignored (responses are never split).

Not supported, answered UNIMPLEMENTED with a message saying so: every ``Auth`` RPC, the
``Cluster`` member changes (use dengine's Cluster service), ``Maintenance`` other than
``Status`` (Alarm, Defragment, Hash, HashKV, Snapshot, MoveLeader). The etcd port does not check
dengine's roles, so it refuses to start with ``auth.enabled``. With ``tls.enabled`` it serves TLS
with the node's certificate, like the node's port, and followers forward over mutual TLS. The lease of a past version of a
key (a Range at an old revision) is reported as 0.
"""
