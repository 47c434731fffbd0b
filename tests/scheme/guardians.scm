; Guardians on faultheap finalizers: objects registered and then dropped
; come back through the guardian after a collection.
(define g (make-guardian))
(define (register n) (do ((i 0 (+ i 1))) ((= i n)) (g (make-vector 3 i))))
(register 200)
(collect)
(collect)
(define (drain k) (let ((x (g))) (if x (drain (+ k (if (vector? x) 1 0))) k)))
(define got (drain 0))
(display (>= got 180)) (newline)
(display (<= got 200)) (newline)
; a kept object is not returned
(define kept (make-vector 1 'kept))
(g kept)
(collect)
(display (g)) (newline)
; ports closed by finalizers
(define (leak n) (do ((i 0 (+ i 1))) ((= i n)) (open-input-file "/dev/null")))
(leak 100)
(collect)
(collect)
(display (>= (ports-finalized) 90)) (newline)
