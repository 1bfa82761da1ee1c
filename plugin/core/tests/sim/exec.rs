//! The deterministic executor: every simulated request runs on its own OS thread, but only the
//! thread holding the baton runs. The baton changes hands only inside host calls, by a seeded
//! decision, so one seed always gives the same interleaving.
//!
//! - A host call is a scheduling point: the scheduler may let the caller go on, hand the baton
//!   to another ready task, or crash the caller (the thread unwinds with a private payload,
//!   caught at its boundary; what it held in memory is gone, its leases expire on their own).
//! - A task that waits (an HTTP call in flight, a `sleep_ms`) is blocked until a simulated
//!   time. When no task is ready, the driver (the thread that called [`Executor::run`]) moves
//!   the clock to the next wake-up or planned event. Time moves only there.

use std::any::Any;
use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A task's work.
pub type Body<W> = Box<dyn FnOnce(&mut Ctx<W>) + Send>;

/// The payload a crashed task unwinds with (never a real panic).
pub struct Crash;

/// What one task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ready,
    Running,
    /// Waiting until this simulated time (ms).
    Blocked(i64),
    Done,
    Crashed,
}

/// One simulated request.
pub struct Task<K> {
    pub label: String,
    pub machine: usize,
    pub status: Status,
    /// What the world needs to know about it (a webhook delivery, a tick, …).
    pub kind: K,
}

/// Hooks the world gives the executor.
pub trait World: Send + 'static {
    /// What the world remembers about a task.
    type Kind: Clone + Send + 'static;
    /// A planned event.
    type Event: Send + 'static;
    /// Whether faults (and crashes) are on.
    fn chaos(&self) -> bool;
    /// Task `task` died at a host call.
    fn crashed(
        &mut self,
        task: usize,
        kind: &Self::Kind,
        now: i64,
        rng: &mut SmallRng,
        plan: &mut Plan<Self::Event>,
    );
}

/// Events waiting for their time, in (time, insertion) order.
pub struct Plan<E> {
    heap: BinaryHeap<Planned<E>>,
    seq: u64,
}

struct Planned<E> {
    at: i64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Planned<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Planned<E> {}
impl<E> PartialOrd for Planned<E> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Planned<E> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: earliest first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Default for Plan<E> {
    fn default() -> Self {
        Plan {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> Plan<E> {
    /// Plans `event` at simulated time `at` (ms).
    pub fn at(&mut self, at: i64, event: E) {
        self.seq += 1;
        self.heap.push(Planned {
            at,
            seq: self.seq,
            event,
        });
    }

    fn next_time(&self) -> Option<i64> {
        self.heap.peek().map(|p| p.at)
    }

    fn pop(&mut self) -> Option<(i64, E)> {
        self.heap.pop().map(|p| (p.at, p.event))
    }

    /// Planned events left.
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Everything shared by the tasks, behind one lock.
pub struct State<W: World> {
    /// Simulated time, ms since the start of the run.
    pub now: i64,
    pub rng: SmallRng,
    pub world: W,
    pub plan: Plan<W::Event>,
    pub tasks: Vec<Task<W::Kind>>,
    /// Clock offset of each machine (ms).
    pub skew: Vec<i64>,
    /// Host calls so far.
    pub steps: u64,
    /// Most host calls one run may make (a livelock guard).
    pub step_limit: u64,
    /// Probability that a host call hands the baton to another ready task.
    pub switch_p: f64,
    /// Probability that a host call crashes its task (while chaos is on).
    pub crash_p: f64,
    /// Set when the run must stop: every task crashes at its next host call.
    pub abort: Option<String>,
    /// Problems found while running (real panics, aborts).
    pub problems: Vec<String>,
    /// A running digest of every scheduling decision and host call, to prove replays match.
    pub digest: u64,
    /// The last lines of the trace (for failure reports), and all of it when `verbose`.
    pub trace: std::collections::VecDeque<String>,
    /// Keep the trace (costs a formatted line per host call).
    pub tracing: bool,
    pub verbose: bool,
    running: Option<usize>,
}

const TRACE_KEEP: usize = 400;

impl<W: World> State<W> {
    fn fold(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Records an event: `key` goes into the digest; `line` into the trace (only formatted when
    /// the trace is kept).
    pub fn event(&mut self, key: &[i64], line: impl FnOnce() -> String) {
        for k in key {
            self.fold(&k.to_le_bytes());
        }
        if self.tracing {
            let line = line();
            if self.verbose {
                eprintln!("{line}");
            }
            if self.trace.len() >= TRACE_KEEP {
                self.trace.pop_front();
            }
            self.trace.push_back(line);
        }
    }

    /// A line for the trace (and the digest).
    pub fn note(&mut self, line: String) {
        self.fold(line.as_bytes());
        self.event(&[], || line);
    }

    /// Whether any task is still alive.
    pub fn live_tasks(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| !matches!(t.status, Status::Done | Status::Crashed))
            .count()
    }

    fn pass_baton(&mut self) {
        let ready: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].status == Status::Ready)
            .collect();
        self.running = if ready.is_empty() {
            None
        } else {
            Some(ready[self.rng.random_range(0..ready.len())])
        };
    }
}

/// The executor: the shared state and the task threads.
pub struct Executor<W: World> {
    shared: Arc<Shared<W>>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared<W: World> {
    st: Mutex<State<W>>,
    cv: Condvar,
}

impl<W: World> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W>> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_turn<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<W>>,
        me: usize,
    ) -> MutexGuard<'a, State<W>> {
        while st.running != Some(me) {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    fn wait_driver<'a>(&'a self, mut st: MutexGuard<'a, State<W>>) -> MutexGuard<'a, State<W>> {
        while st.running.is_some() {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }
}

/// A task's handle on the executor: what its `Host` implementation calls.
pub struct Ctx<W: World> {
    shared: Arc<Shared<W>>,
    pub id: usize,
    pub machine: usize,
}

impl<W: World> Ctx<W> {
    /// Reads the state without a scheduling point (for `Host::now` and reports).
    pub fn peek(&self) -> MutexGuard<'_, State<W>> {
        self.shared.lock()
    }

    /// A scheduling point: may crash this task or let another run first. Returns the lock, so
    /// the caller's operation happens atomically at this point.
    pub fn enter(&self, op: &str, arg: &str, n: i64) -> MutexGuard<'_, State<W>> {
        let mut st = self.shared.lock();
        st.steps += 1;
        if st.steps > st.step_limit && st.abort.is_none() {
            let limit = st.step_limit;
            st.abort = Some(format!("more than {limit} host calls: livelock?"));
        }
        if st.abort.is_some() {
            self.die(st);
        }
        st.fold(op.as_bytes());
        st.fold(arg.as_bytes());
        let (now, id, machine) = (st.now, self.id, self.machine);
        st.event(&[now, id as i64, n], || {
            let n = if n != 0 {
                format!(" {n}")
            } else {
                String::new()
            };
            format!("{now:>9} t{id} m{machine} {op} {arg}{n}")
        });
        let crash_p = st.crash_p;
        if st.world.chaos() && crash_p > 0.0 && st.rng.random_bool(crash_p) {
            self.die(st);
        }
        let switch_p = st.switch_p;
        if st.rng.random_bool(switch_p) {
            st.tasks[self.id].status = Status::Ready;
            st.pass_baton();
            if st.running != Some(self.id) {
                let next = st.running;
                let next = next.map_or(-1, |n| n as i64);
                st.event(&[next], || format!("          switch -> t{next}"));
                self.shared.cv.notify_all();
                st = self.shared.wait_turn(st, self.id);
                if st.abort.is_some() {
                    self.die(st);
                }
            }
            st.tasks[self.id].status = Status::Running;
        }
        st
    }

    /// Blocks this task until simulated time `until`, letting others run.
    pub fn block<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<W>>,
        until: i64,
    ) -> MutexGuard<'a, State<W>> {
        st.tasks[self.id].status = Status::Blocked(until);
        st.pass_baton();
        self.shared.cv.notify_all();
        st = self.shared.wait_turn(st, self.id);
        if st.abort.is_some() {
            self.die(st);
        }
        st.tasks[self.id].status = Status::Running;
        st
    }

    /// Crashes this task: the world hears of it, the baton moves on, the thread unwinds.
    fn die(&self, mut st: MutexGuard<'_, State<W>>) -> ! {
        st.tasks[self.id].status = Status::Crashed;
        let label = st.tasks[self.id].label.clone();
        let line = format!(
            "{:>9} t{} m{} CRASH before that call ({label})",
            st.now, self.id, self.machine
        );
        st.note(line);
        let kind = st.tasks[self.id].kind.clone();
        let now = st.now;
        let State {
            world, rng, plan, ..
        } = &mut *st;
        world.crashed(self.id, &kind, now, rng, plan);
        st.pass_baton();
        self.shared.cv.notify_all();
        drop(st);
        resume_unwind(Box::new(Crash))
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Lets the driver start tasks while it holds the state.
pub struct Spawner<'a, W: World> {
    pub st: &'a mut State<W>,
    new: &'a mut Vec<(usize, Body<W>)>,
}

impl<W: World> Spawner<'_, W> {
    /// Starts a task on `machine`; it runs once the scheduler gives it the baton.
    pub fn spawn(
        &mut self,
        label: String,
        machine: usize,
        kind: W::Kind,
        body: impl FnOnce(&mut Ctx<W>) + Send + 'static,
    ) {
        let id = self.st.tasks.len();
        let line = format!("{:>9} t{id} m{machine} start {label}", self.st.now);
        self.st.note(line);
        self.st.tasks.push(Task {
            label,
            machine,
            status: Status::Ready,
            kind,
        });
        self.new.push((id, Box::new(body)));
    }
}

impl<W: World> Executor<W> {
    pub fn new(seed: u64, world: W, skew: Vec<i64>) -> Self {
        let st = State {
            now: 0,
            rng: SmallRng::seed_from_u64(seed),
            world,
            plan: Plan::default(),
            tasks: Vec::new(),
            skew,
            steps: 0,
            step_limit: 2_000_000,
            switch_p: 0.2,
            crash_p: 0.0,
            abort: None,
            problems: Vec::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            trace: Default::default(),
            tracing: false,
            verbose: false,
            running: None,
        };
        Executor {
            shared: Arc::new(Shared {
                st: Mutex::new(st),
                cv: Condvar::new(),
            }),
            threads: Vec::new(),
        }
    }

    /// The state, between steps (only the driver calls this, while no task runs).
    pub fn state(&self) -> MutexGuard<'_, State<W>> {
        self.shared.lock()
    }

    /// Runs until no task is alive and no event is planned, or until `stop` says so (it is
    /// asked whenever the clock is about to move).
    /// `on_event` handles an event that has come: it spawns tasks and changes the world.
    pub fn run(
        &mut self,
        on_event: &mut dyn FnMut(&mut Spawner<'_, W>, W::Event),
        stop: &mut dyn FnMut(&mut State<W>) -> bool,
    ) {
        loop {
            let mut st = self.shared.wait_driver(self.shared.lock());
            let mut new = Vec::new();
            if st.abort.is_none() && stop(&mut st) {
                st.abort = Some(String::new());
            }
            if st.abort.is_some() {
                // Wake every blocked task so that it unwinds; plan nothing more.
                if st.live_tasks() == 0 {
                    break;
                }
                for t in st.tasks.iter_mut() {
                    if let Status::Blocked(_) = t.status {
                        t.status = Status::Ready;
                    }
                }
            } else {
                let next_wake = st
                    .tasks
                    .iter()
                    .filter_map(|t| match t.status {
                        Status::Blocked(u) => Some(u),
                        _ => None,
                    })
                    .min();
                let next_event = st.plan.next_time();
                let Some(t) = [next_wake, next_event].into_iter().flatten().min() else {
                    break;
                };
                st.now = st.now.max(t);
                let now = st.now;
                for t in st.tasks.iter_mut() {
                    if let Status::Blocked(u) = t.status
                        && u <= now
                    {
                        t.status = Status::Ready;
                    }
                }
                while st.plan.next_time().is_some_and(|at| at <= now) {
                    let (_, event) = st.plan.pop().expect("peeked");
                    let mut sp = Spawner {
                        st: &mut st,
                        new: &mut new,
                    };
                    on_event(&mut sp, event);
                }
            }
            for (id, body) in new {
                let shared = self.shared.clone();
                let machine = st.tasks[id].machine;
                self.threads.push(
                    std::thread::Builder::new()
                        .name(format!("dst-task-{id}"))
                        .stack_size(4 << 20)
                        .spawn(move || task_main(shared, id, machine, body))
                        .expect("spawn a task thread"),
                );
            }
            st.pass_baton();
            self.shared.cv.notify_all();
            drop(st);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn task_main<W: World>(shared: Arc<Shared<W>>, id: usize, machine: usize, body: Body<W>) {
    {
        let mut st = shared.wait_turn(shared.lock(), id);
        if st.abort.is_some() {
            st.tasks[id].status = Status::Crashed;
            st.pass_baton();
            shared.cv.notify_all();
            return;
        }
        st.tasks[id].status = Status::Running;
    }
    let mut ctx = Ctx {
        shared: shared.clone(),
        id,
        machine,
    };
    let result = catch_unwind(AssertUnwindSafe(|| body(&mut ctx)));
    match result {
        Err(p) if p.is::<Crash>() => {}
        other => {
            let mut st = shared.lock();
            if let Err(p) = other {
                let msg = panic_message(&*p);
                let label = st.tasks[id].label.clone();
                st.problems
                    .push(format!("task t{id} ({label}) panicked: {msg}"));
                let line = format!("{:>9} t{id} PANIC {msg}", st.now);
                st.note(line);
            } else {
                let line = format!("{:>9} t{id} done", st.now);
                st.note(line);
            }
            st.tasks[id].status = Status::Done;
            st.pass_baton();
            shared.cv.notify_all();
        }
    }
}
