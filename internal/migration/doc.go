// Package migration owns the live-migration sequence, its timing record
// and its rollback. It drives three parties through small interfaces — the
// source host, the destination host and the switch — so the order that
// keeps connections alive is written down once:
//
//  1. Prepare both sides while the source still serves: on the destination
//     a network namespace with the same IP and MAC, locked (it drops
//     everything), the bundle and, as far as it can go without the images,
//     the restore; on the source, the dump.
//  2. Optionally quiesce the application and wait, bounded, for its TCP
//     send queues to drain (read through sock_diag; package drain).
//  3. Freeze the container, open the image stream to the destination, and
//     dump with TCP repair; the source namespace stays locked, so its
//     kernel never answers the clients' retransmissions with RST. The
//     stream carries each image as soon as it is written (package
//     transfer), with a checksum per file.
//  4. The destination verifies the stream and restores into the pre-staged,
//     still locked namespace.
//  5. Point the switch at the destination and unlock it. The destination
//     does both itself at CRIU's pre-resume step when it can — after CRIU
//     rebuilt the container, before its first instruction runs, so nothing
//     the application sends is lost to the lock; otherwise the source
//     steers once the restore returned, and the destination unlocks.
//  6. Commit; hand the clients' frames caught on the source during the
//     freeze to the destination (package handoff); in post-copy, wait for
//     the destination's last page; remove the source, whose lock goes with
//     its namespace.
//
// Any failure before step 5 completes brings the container back on the
// source — from its stopped tasks or its images, or, if the dump itself
// failed, by thawing it — and then discards the destination while it is
// still locked, so it can never send a FIN or RST, or data the source would
// later send differently. (If the destination took the address and its
// restore failed afterwards, the switch is pointed back first.) After step 5
// the destination owns the container; a post-copy that cannot finish then
// loses it, and the record says so.
package migration
