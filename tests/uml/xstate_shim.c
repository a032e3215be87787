/*
 * LD_PRELOAD shim that lets UML builds before ~6.13 run on hosts whose XSAVE state is larger
 * than those builds expect (Intel CPUs with AMX tile state).
 *
 * Why: such a UML kernel restores a guest's FPU registers with
 * ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, iov) from a fixed-size buffer, while the host
 * kernel accepts only a buffer of its full XSAVE size (EFAULT otherwise), so the first user
 * process dies with "ptrace set fp regs failed, errno = 14". The fixed buffer covers every
 * component up to the AMX ones, and the guest never enables AMX (its state stays in the init
 * state), so the missing tail is read back from the traced process and the call is made with
 * the full size. Other requests, and buffers already of the full size, pass through untouched.
 *
 * Built and preloaded by tests/uml/bootcheck.py (spawn); test infrastructure, not product code.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

/* UML calls ptrace from one host thread; kernel stacks are too small for this buffer. */
static unsigned char full_state[64 * 1024] __attribute__((aligned(64)));
static size_t full_size; /* the host's XSAVE size, learned at the first SETREGSET */

long ptrace(enum __ptrace_request request, ...)
{
	static ptrace_fn real;
	va_list ap;
	pid_t pid;
	void *addr, *data;

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

	if (request == PTRACE_SETREGSET && (unsigned long)addr == NT_X86_XSTATE && data) {
		struct iovec *given = data;
		struct iovec whole = { full_state, sizeof full_state };

		if (full_size == 0 || given->iov_len < full_size) {
			if (real(PTRACE_GETREGSET, pid, addr, &whole) == 0) {
				full_size = whole.iov_len;
				if (given->iov_len < whole.iov_len) {
					memcpy(full_state, given->iov_base, given->iov_len);
					return real(PTRACE_SETREGSET, pid, addr, &whole);
				}
			}
		}
	}
	return real(request, pid, addr, data);
}
