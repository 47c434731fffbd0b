; Proper tail calls: every loop below runs 10^6 iterations in constant stack.
(define (count n) (let loop ((i 0)) (if (< i n) (loop (+ i 1)) i)))
(display (count 1000000)) (newline)
(define (ev? n) (if (= n 0) #t (od? (- n 1))))
(define (od? n) (if (= n 0) #f (ev? (- n 1))))
(display (ev? 1000000)) (newline)
(define (f n acc) (cond ((= n 0) acc) (else (and #t (or #f (when #t (f (- n 1) (+ acc 1))))))))
(display (f 1000000 0)) (newline)
(define (g n) (if (= n 0) 'done (apply g (list (- n 1)))))
(display (g 1000000)) (newline)
(display (do ((i 0 (+ i 1)) (l '() (if (< i 3) (cons i l) l))) ((= i 1000000) l))) (newline)
; deep non-tail recursion on the big C stack
(define (build n) (if (= n 0) '() (cons n (build (- n 1)))))
(display (length (build 200000))) (newline)
