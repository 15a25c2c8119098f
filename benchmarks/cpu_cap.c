/* Run a program as if the CPU were x86-64-v3 (AVX2 + FMA, the Haswell level): no AVX-512, no
 * VNNI, no bfloat16, no AMX. For benchmarks only (issue 27): the speed of XNNPACK's, oneDNN's and
 * PyTorch's AVX2 kernels, measured on an AVX-512 machine, side by side in one run.
 *
 *     make cpu-cap                      (builds benchmarks/tmp/cpu_cap.so)
 *     LD_PRELOAD=benchmarks/tmp/cpu_cap.so python -m benchmarks.peer ...
 *     (or: make bench-peer CPU_CAP=x86-64-v3)
 *
 * How: every library picks its kernels from what the CPUID instruction reports. Linux can make
 * CPUID fault in user space (arch_prctl ARCH_SET_CPUID, on CPUs with the cpuid_fault flag); this
 * library turns that on before the program starts, answers each faulting CPUID itself with the real
 * answer less the features above x86-64-v3, and steps over the instruction. The kernels then run at
 * the real speed of this machine's AVX2 units. The setting passes to threads; a new program
 * (execve) gets it again through LD_PRELOAD. glibc reads CPUID before this library loads, so its
 * own string functions keep their AVX-512 forms; they are not what is measured.
 *
 * It sets CPUID_CAP=x86-64-v3 in the environment, which common/cpuinfo.py reads so that benchmark
 * outputs say what the kernels saw. Where CPUID cannot fault it stops the program (exit 2) rather
 * than run it uncapped. A program's own SIGSEGV handler still gets every other fault.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
#define BIT(n) (1u << (n))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static struct sigaction program_handler; /* the SIGSEGV handler the program asked for */
static int capping;

/* Clear, in CPUID's answer for (leaf, subleaf), the features above x86-64-v3 (Intel SDM vol. 2,
 * CPUID leaf 07H). */
static void drop_above_v3(unsigned leaf, unsigned subleaf, unsigned *eax, unsigned *ebx, unsigned *ecx,
                          unsigned *edx) {
    if (leaf == 7 && subleaf == 0) {
        /* AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        *ebx &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* AVX512 VBMI, VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512 VNNI, BITALG, VPOPCNTDQ */
        *ecx &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(9) | BIT(10) | BIT(11) | BIT(12) | BIT(14));
        /* AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512 FP16, AMX-TILE, AMX-INT8 */
        *edx &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        *eax &= ~(BIT(4) | BIT(5) | BIT(23)); /* AVX-VNNI, AVX512 BF16, AVX-IFMA */
        /* AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16, AVX10 */
        *edx &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) { /* CPUID */
        unsigned leaf = regs[REG_RAX], subleaf = regs[REG_RCX], eax, ebx, ecx, edx;
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __cpuid_count(leaf, subleaf, eax, ebx, ecx, edx);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        drop_above_v3(leaf, subleaf, &eax, &ebx, &ecx, &edx);
        regs[REG_RAX] = eax;
        regs[REG_RBX] = ebx;
        regs[REG_RCX] = ecx;
        regs[REG_RDX] = edx;
        regs[REG_RIP] += 2;
        return;
    }
    if (program_handler.sa_flags & SA_SIGINFO) {
        program_handler.sa_sigaction(sig, info, context);
    } else if (program_handler.sa_handler != SIG_DFL && program_handler.sa_handler != SIG_IGN) {
        program_handler.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* the instruction faults again and ends the program as usual */
    }
}

/* Programs (Python's faulthandler, say) may install their own SIGSEGV handler: keep ours in place
 * and pass them the faults that are not CPUID. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static sigaction_fn real;
    if (!real) real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !capping) return real(sig, act, old);
    if (old) *old = program_handler;
    if (act) program_handler = *act;
    return 0;
}

__attribute__((constructor)) static void start_capping(void) {
    sigaction_fn real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_segv;
    ours.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&ours.sa_mask);
    real(SIGSEGV, &ours, &program_handler);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpu_cap: this CPU or kernel cannot make CPUID fault (no cpuid_fault flag in "
                        "/proc/cpuinfo), so nothing can be capped; not running uncapped\n");
        _exit(2);
    }
    capping = 1;
    setenv("CPUID_CAP", "x86-64-v3", 1);
}
