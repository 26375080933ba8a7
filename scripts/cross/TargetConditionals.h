/* Stand-in for the macOS SDK's TargetConditionals.h, used only by scripts/cross-check.sh: ring's
 * C code includes it on Apple targets, and no SDK exists on the Linux machine that type-checks
 * the macOS build. These are the SDK's values for a macOS (not iOS) target. */
#ifndef EMBER_CROSS_TARGET_CONDITIONALS_H
#define EMBER_CROSS_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#endif
