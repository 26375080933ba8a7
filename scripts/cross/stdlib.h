/* Stand-in for the C library's stdlib.h, used only by scripts/cross-check.sh (no MSVC or Windows
 * SDK headers on Linux). clang targeting MSVC defines _MSC_VER, and ring's internal.h then
 * includes <stdlib.h> for _byteswap_ulong, which clang provides as a builtin. Nothing else of
 * stdlib.h is used with RING_CORE_NOSTDLIBINC. */
