# .pvm reader fuzzing, included by tests/fuzz/Makefile.am after it has
# defined TESTS, check_PROGRAMS, check_SCRIPTS, EXTRA_DIST and CLEANFILES.
# fuzz-pvm is built by clang with libFuzzer + ASan/UBSan straight from the
# reader's sources, so the instrumented code is the code under test.
check_PROGRAMS += gen-pvm-seeds
gen_pvm_seeds_SOURCES = gen-pvm-seeds.c
gen_pvm_seeds_CFLAGS = $(AX_WARN) -I$(top_srcdir)/core
gen_pvm_seeds_LDADD = $(top_builddir)/core/libpivot.la -lm
EXTRA_DIST += fuzz-pvm.c run-fuzz-pvm.sh pvm.mk
TESTS += run-fuzz-pvm.sh
CLEANFILES += fuzz-pvm
FUZZ_PVM_SRCS = $(srcdir)/fuzz-pvm.c $(top_srcdir)/core/pvm.c \
	$(top_srcdir)/core/crc32.c $(top_srcdir)/core/graph.c \
	$(top_srcdir)/core/pivot.c $(top_srcdir)/core/error.c \
	$(top_srcdir)/core/tensor.c
if HAVE_CLANG
check_SCRIPTS += fuzz-pvm
fuzz-pvm: $(FUZZ_PVM_SRCS)
	$(AM_V_CC)$(CLANG) -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -DPV_PVM_FUZZING -I$(top_builddir) -I$(top_srcdir)/core \
	  $(FUZZ_PVM_SRCS) -lm -o $@
endif
