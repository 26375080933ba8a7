/* A stand-in for Windows 10's bcryptprimitives.dll, for running Ember's Windows binaries under
 * wine 8 (Debian 12), which lacks it. Rust's std (>= 1.78) imports ProcessPrng from this DLL for
 * every random number (HashMap seeds, rand); without it no Rust binary starts under this wine.
 * Windows 10 and later ship the real DLL: this file is only ever copied into a test prefix.
 * ProcessPrng fills the buffer from the OS generator and always succeeds, like the real one;
 * this one draws from RtlGenRandom (advapi32's SystemFunction036), which wine implements. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
    if (!SystemFunction036(data, chunk)) {
      /* The real function never fails; stopping the process is the only honest answer. */
      ExitProcess(0xC0000001);
    }
    data += chunk;
    length -= chunk;
  }
  return TRUE;
}
