;;; threads: four SRFI-18 threads each building and checking binary trees
;;; (allocation in parallel, one mutator per thread), adding to a shared
;;; total under a mutex (written for fhscheme's suite).
(define (make-tree d) (if (= d 0) (cons #f #f) (cons (make-tree (- d 1)) (make-tree (- d 1)))))
(define (check t) (if (car t) (+ 1 (check (car t)) (check (cdr t))) 1))
(define m (make-mutex))
(define total 0)
(define (work id iters depth)
  (lambda ()
    (let loop ((i 0) (acc 0))
      (if (= i iters)
          (begin (mutex-lock! m) (set! total (+ total acc)) (mutex-unlock! m) acc)
          (loop (+ i 1) (+ acc (check (make-tree depth))))))))
(define long-lived (make-tree 16))
(define ts (map (lambda (id) (make-thread (work id 40 14))) '(0 1 2 3)))
(for-each thread-start! ts)
(for-each thread-join! ts)
(display (list total (check long-lived)))
(newline)
