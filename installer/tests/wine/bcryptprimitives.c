/*
 * ProcessPrng for wine 8.0 (Debian 12), which has no bcryptprimitives.dll: Rust's standard
 * library (1.78 and later) imports ProcessPrng from it for its random numbers, so without this
 * no Rust program starts under that wine. Windows 10 and 11 have the real DLL; this one exists
 * only in the test's wine prefix (installer/tests/msi.py builds it there with mingw-w64).
 * RtlGenRandom (advapi32's SystemFunction036) takes at most a ULONG per call.
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
