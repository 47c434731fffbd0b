;;; fhscheme prelude for ecraven/r7rs-benchmarks: put in front of
;;; src/PROGRAM.scm src/common.scm src/common-postlude.scm.
;;; (import ...) forms are accepted and ignored by fhscheme.
(define (this-scheme-implementation-name) "fhscheme")
