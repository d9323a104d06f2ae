// The start of a shell script that stands in for an OCI runtime CLI (runc, runsc) in unit tests
// of src/oci: it records its arguments in <dir>/args, skips the global flags, takes --log's
// file into $log, and leaves the subcommand in $cmd and the container id (the last argument) in
// $id. Each test writes the rest: what its runtime prints and how it fails.
export const fakeOciCliPrelude = (dir: string): string => `#!/bin/sh
printf '%s\\n' "$@" > ${dir}/args
log=
while [ $# -gt 0 ]; do
  case "$1" in
    --version) break ;;
    --log) log=$2; shift 2 ;;
    --*) shift 2 ;;
    *) break ;;
  esac
done
cmd=$1
eval id=\\\${$#}
`;
