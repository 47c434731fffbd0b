;; SRFI-18 threads: each a mutator of its own.
(define (iota n) (let loop ((i (- n 1)) (acc '())) (if (< i 0) acc (loop (- i 1) (cons i acc)))))
(define (every p l) (or (null? l) (and (p (car l)) (every p (cdr l)))))
(define (make-tree d) (if (= d 0) '() (cons (make-tree (- d 1)) (make-tree (- d 1)))))
(define (count-tree t) (if (null? t) 1 (+ (count-tree (car t)) (count-tree (cdr t)))))
(define (worker id)
  (lambda ()
    (let loop ((i 0) (acc 0))
      (if (= i 10) (list id acc)
          (loop (+ i 1) (+ acc (count-tree (make-tree 10))))))))
(define ts (map (lambda (i) (make-thread (worker i) i)) '(0 1 2 3)))
(for-each thread-start! ts)
(display (map thread-join! ts)) (newline)

;; a counter under a mutex
(define m (make-mutex 'counter))
(define counter 0)
(define (bump n) (do ((i 0 (+ i 1))) ((= i n)) (mutex-lock! m) (set! counter (+ counter 1)) (mutex-unlock! m)))
(define bs (map (lambda (i) (thread-start! (make-thread (lambda () (bump 2000))))) '(0 1 2 3)))
(for-each thread-join! bs)
(display counter) (newline)

;; producer / consumer on a condition variable
(define qm (make-mutex)) (define qc (make-condition-variable))
(define items '()) (define done #f)
(define consumer
  (make-thread
   (lambda ()
     (let loop ((sum 0))
       (mutex-lock! qm)
       (cond ((pair? items)
              (let ((x (car items))) (set! items (cdr items)) (mutex-unlock! qm) (loop (+ sum x))))
             (done (mutex-unlock! qm) sum)
             (else (mutex-unlock! qm qc 1) (loop sum)))))))
(thread-start! consumer)
(do ((i 1 (+ i 1))) ((> i 500))
  (mutex-lock! qm) (set! items (cons i items)) (condition-variable-signal! qc) (mutex-unlock! qm))
(mutex-lock! qm) (set! done #t) (condition-variable-broadcast! qc) (mutex-unlock! qm)
(display (thread-join! consumer)) (newline)

;; interning from several threads: one symbol per name
(define (syms k) (lambda () (map (lambda (i) (string->symbol (string-append "s" (number->string (modulo (* i k) 300))))) (iota 300))))
(define ss (map (lambda (k) (thread-start! (make-thread (syms k)))) '(1 7 11)))
(define lists (map thread-join! ss))
(display (every (lambda (l) (every (lambda (s) (eq? s (string->symbol (symbol->string s)))) l)) lists)) (newline)

;; one eq?-hashtable filled from several threads (the interpreter locks it)
(define ht (make-eq-hashtable))
(define keys (list->vector (map (lambda (i) (list i)) (iota 2000))))
(define hs (map (lambda (k) (thread-start! (make-thread (lambda ()
                  (do ((i k (+ i 4))) ((>= i 2000)) (hashtable-set! ht (vector-ref keys i) i))))))
                '(0 1 2 3)))
(for-each thread-join! hs)
(collect)
(display (list (hashtable-count ht) (hashtable-ref ht (vector-ref keys 1234) #f))) (newline)

;; a thread that spins without allocating does not hold collections up
;; (closure entry polls the safepoint): it is spinning before the churn
(define stop #f)
(define spinning #f)
(define spinner (thread-start! (make-thread (lambda () (set! spinning #t) (let loop ((i 0)) (if stop i (loop (+ i 1))))))))
(let wait () (if (not spinning) (begin (thread-yield!) (wait))))
(define (churn n) (if (= n 0) 'ok (begin (make-vector 1000 n) (churn (- n 1)))))
(display (churn 3000)) (newline)
(set! stop #t)
(display (number? (thread-join! spinner))) (newline)

;; an uncaught error in a thread reaches its joiner
(define bad (thread-start! (make-thread (lambda () (car 5)))))
(display (guard (e (#t 'caught)) (thread-join! bad))) (newline)
(define tt (make-thread (lambda () (thread-specific (current-thread))) 'named))
(thread-specific-set! tt 42)
(thread-start! tt)
(display (list (thread-join! tt) (thread-name tt) (thread? tt) (thread? 5))) (newline)
(thread-sleep! 0.01)
(display (thread-join! (thread-start! (make-thread (lambda () (thread-yield!) 'yielded)))))
(newline)
