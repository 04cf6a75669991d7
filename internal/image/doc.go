// Package image is an agent's content-addressed store of OCI images.
//
// An image is loaded from an OCI layout (directory or tarball) or a
// docker-archive, its blobs are verified, and its layers are flattened
// once (mutate.Extract applies the whiteouts) into one read-only
// directory that containers use as the lower layer of an overlay root.
// Images are keyed by their config digest: the config lists the layers'
// uncompressed digests, so it names the filesystem and the run settings
// whatever the archive format or layer compression was, and the same
// image saved by docker and by skopeo, or exported by another agent,
// lands on the same entry. A manifest digest would differ between those.
//
// Layout of a store directory:
//
//	index.json             refs (name:tag) -> config digest
//	lock                   flock(2) held while the index or an image dir changes
//	tmp/                   loads and removals in progress; swept by Open
//	sha256/<hex>/image.json  what List shows (digest, size, created, config)
//	sha256/<hex>/config.json the OCI image config, verbatim
//	sha256/<hex>/oci/        the image's original blobs (an OCI layout), for Export
//	sha256/<hex>/rootfs/     the flattened filesystem: the overlay lower dir
package image
