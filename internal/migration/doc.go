// Package migration owns the live-migration sequence, its timing record
// and its rollback. It drives three parties through small interfaces — the
// source host, the destination host and the switch — so the order that
// keeps connections alive is written down once:
//
//  1. Prepare the destination while the source still serves: a network
//     namespace with the same IP and MAC, locked (it drops everything), and
//     the bundle.
//  2. Optionally quiesce the application and wait, bounded, for its TCP
//     send queues to drain (read through sock_diag).
//  3. Freeze the container and dump it with TCP repair. CRIU leaves the
//     source namespace locked, so its kernel never answers the clients'
//     retransmissions with RST.
//  4. Stream the images to the destination over one TCP connection, with a
//     checksum per file; the destination verifies them and restores into the
//     pre-staged, still locked namespace.
//  5. Point the switch at the destination and unlock it. The destination
//     does both itself from CRIU's pre-resume hook when it can — after CRIU
//     rebuilt the container, before its first instruction runs, so nothing
//     the application sends is lost to the lock; otherwise the source
//     steers once the restore returned, and the destination unlocks.
//  6. Resume; hand the clients' frames caught on the source during the
//     freeze to the destination; remove the source, whose lock goes with its
//     namespace.
//
// Any failure before step 5 completes restores the container on the source
// from the same images (or, if the dump itself failed, just thaws it), and
// discards the destination while it is still locked, so it can never send
// a FIN or RST, or data the source would later send differently. (If the
// destination took the address and its restore failed afterwards, the
// switch is pointed back first.) After step 5 the destination owns the
// container.
package migration
