;;; Put in front of each program of bench/scheme/ to run it on Guile 3
;;; (fhbench scheme does): records, SRFI-18 threads and R6RS
;;; eq?-hashtables, which fhscheme provides built in.
(use-modules (srfi srfi-9) (srfi srfi-18) (rnrs hashtables))
(define (hashtable-count t) (hashtable-size t))
(define (exact x) (inexact->exact x))
