;; Warm-up for fhscheme --prefork (tests/test_scheme.c prefork): a table
;; and strings the workers read, a handler that allocates per request.
(define table (make-equal-hash-table))
(do ((i 0 (+ i 1))) ((= i 20000))
  (hash-table-set! table i (list i (number->string i) (make-vector 8 i))))
(define words (list->vector (map (lambda (i) (string-append "word-" (number->string i))) (iota 5000))))
(define served 0)
(define (handle-request k)
  (let* ((e (hash-table-ref/default table (modulo (* k 7919) 20000) #f))
         (w (vector-ref words (modulo k 5000)))
         (garbage (map (lambda (i) (make-string 10 #\x)) (iota 200))))
    (list k (cadr e) (vector-ref (caddr e) 3) (string-upcase w) (length garbage))))
