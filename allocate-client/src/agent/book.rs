//! The agent's order bookkeeping, in one place and without IO: which orders are running, which
//! connection each answer belongs to, which answers wait to be sent, and the reconnect delay.

use allocate_core::wire::{AgentMessage, ProvisionOrder, ReleaseOrder, ServerMessage};
use allocate_core::ProvisionResult;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use uuid::Uuid;

/// Most orders running at once (given to the caller, not yet answered); beyond it a provision
/// is refused with an error answer and a release is left for the server to resend.
pub const ORDERS_IN_FLIGHT_MAX: usize = 256;

/// Most answers waiting for a registered connection; beyond it the oldest is dropped.
pub const ANSWERS_UNSENT_MAX: usize = 256;

/// How many finished releases are remembered, to acknowledge a resent one at once.
pub const RELEASES_REMEMBERED: usize = 64;

/// How many successful provisions are remembered (until their release), to answer a resent
/// one with the same connection instead of provisioning again.
pub const PROVISIONS_REMEMBERED: usize = 64;

/// One order of the server, and the connection (counted from 1) it came on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// Prepare a resource: answer with [`crate::AgentHandle::provisioned`].
    Provision {
        /// The server's order.
        order: ProvisionOrder,
        /// The connection it came on.
        connection: u64,
    },
    /// Clean up a resource: answer with [`crate::AgentHandle::released`].
    Release {
        /// The server's order.
        order: ReleaseOrder,
        /// The connection it came on.
        connection: u64,
    },
}

impl Order {
    /// The allocation it concerns.
    pub fn allocation_id(&self) -> Uuid {
        match self {
            Order::Provision { order, .. } => order.allocation_id,
            Order::Release { order, .. } => order.allocation_id,
        }
    }

    /// The connection it came on.
    pub fn connection(&self) -> u64 {
        match self {
            Order::Provision { connection, .. } | Order::Release { connection, .. } => *connection,
        }
    }

    fn key(&self) -> (Action, Uuid) {
        match self {
            Order::Provision { .. } => (Action::Provision, self.allocation_id()),
            Order::Release { .. } => (Action::Release, self.allocation_id()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Provision,
    Release,
}

/// What to do with an order the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderStep {
    /// Give it to the caller, who answers it.
    Deliver(Order),
    /// Send this answer now, without the caller (a resent release already done, or a
    /// provision refused because too many orders run).
    Answer(AgentMessage),
    /// Nothing to do: the same order is already running (its answer is coming, on the
    /// connection that sent it last), or a release waits for its allocation's provision to be
    /// answered first.
    Wait,
    /// Too many orders run: the server resends a release when the agent reconnects.
    Drop,
}

/// The order bookkeeping of one agent across its connections. Answers belong to the newest
/// connection that sent the order: a provision answered after that connection closed is
/// dropped (the server has failed it already), unless a newer connection sent it again (a
/// connection that took over resends the orders in flight); a release answer is sent on the
/// next connection (the server waits for it). Orders are answered idempotently: a repeat of
/// a running order waits for its answer, a repeat of a finished release is acknowledged and a
/// repeat of a successful provision is answered with its connection, without running again.
#[derive(Clone, Debug, Default)]
pub struct OrderBook {
    connection: u64,
    registered: bool,
    /// The orders given to the caller and not yet answered, with the newest connection that
    /// sent each.
    in_flight: HashMap<(Action, Uuid), u64>,
    /// Releases that arrived while their allocation's provision was running.
    held: HashMap<Uuid, ReleaseOrder>,
    released: VecDeque<Uuid>,
    /// Successful provisions not released since: allocation, resource, answer.
    provisioned: VecDeque<(Uuid, Uuid, ProvisionResult)>,
    /// Answers and the connection of their order.
    unsent: VecDeque<(u64, AgentMessage)>,
}

impl OrderBook {
    /// A book with no connection yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection opened (not yet registered); returns its number.
    pub fn connected(&mut self) -> u64 {
        self.connection += 1;
        self.registered = false;
        self.connection
    }

    /// The current connection's registration was accepted: answers may be sent.
    pub fn registered(&mut self) {
        self.registered = true;
    }

    /// The current connection's number (0 before the first).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Orders given to the caller and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes an order of the server (a [`ServerMessage::Provision`] or `Release`; anything
    /// else is [`OrderStep::Wait`]).
    pub fn on_order(&mut self, message: ServerMessage) -> OrderStep {
        let order = match message {
            ServerMessage::Provision(order) => Order::Provision {
                order,
                connection: self.connection,
            },
            ServerMessage::Release(order) => Order::Release {
                order,
                connection: self.connection,
            },
            ServerMessage::Registered { .. } => return OrderStep::Wait,
        };
        let key = order.key();
        let id = key.1;
        if let Some(connection) = self.in_flight.get_mut(&key) {
            *connection = self.connection;
            return OrderStep::Wait;
        }
        match key.0 {
            Action::Release if self.released.contains(&id) => {
                return OrderStep::Answer(AgentMessage::Released { allocation_id: id });
            }
            Action::Provision => {
                if let Some(result) = self.remembered(&order) {
                    return OrderStep::Answer(AgentMessage::Provisioned {
                        allocation_id: id,
                        result,
                    });
                }
                // Provisioned again after a release: its next release must run again too.
                self.released.retain(|r| *r != id);
            }
            Action::Release => {}
        }
        if self.in_flight.len() >= ORDERS_IN_FLIGHT_MAX {
            return match order {
                Order::Provision { .. } => OrderStep::Answer(AgentMessage::Provisioned {
                    allocation_id: id,
                    result: ProvisionResult::Failed(format!(
                        "the agent is busy: {ORDERS_IN_FLIGHT_MAX} orders are running"
                    )),
                }),
                Order::Release { .. } => OrderStep::Drop,
            };
        }
        self.in_flight.insert(key, self.connection);
        match order {
            Order::Release { order, .. }
                if self.in_flight.contains_key(&(Action::Provision, id)) =>
            {
                self.held.insert(id, order);
                OrderStep::Wait
            }
            order => OrderStep::Deliver(order),
        }
    }

    /// The caller answered `order` (`result` for a provision, `None` for a release). Queues
    /// the answer for [`OrderBook::take_unsent`]; returns a held release of the same
    /// allocation, now due to the caller.
    pub fn answer(&mut self, order: &Order, result: Option<ProvisionResult>) -> Option<Order> {
        let key = order.key();
        let id = key.1;
        let Some(connection) = self.in_flight.remove(&key) else {
            return None; // answered twice, or never given out: the first answer stands
        };
        let message = match (order, result) {
            (Order::Provision { order: p, .. }, result) => {
                let result = result.unwrap_or_else(|| {
                    ProvisionResult::Failed("the agent gave no connection".into())
                });
                if matches!(result, ProvisionResult::Connection(_)) {
                    // A failed one is not remembered: running it again is harmless.
                    if self.provisioned.len() >= PROVISIONS_REMEMBERED {
                        self.provisioned.pop_front();
                    }
                    self.provisioned
                        .push_back((id, p.inventory_id, result.clone()));
                }
                AgentMessage::Provisioned {
                    allocation_id: id,
                    result,
                }
            }
            (Order::Release { .. }, _) => {
                self.provisioned.retain(|(p, _, _)| *p != id);
                if self.released.len() >= RELEASES_REMEMBERED {
                    self.released.pop_front();
                }
                self.released.push_back(id);
                AgentMessage::Released { allocation_id: id }
            }
        };
        if self.unsent.len() >= ANSWERS_UNSENT_MAX {
            self.unsent.pop_front();
        }
        self.unsent.push_back((connection, message));
        self.held_release(order)
    }

    /// The remembered answer to a provision of the same allocation on the same resource.
    fn remembered(&self, order: &Order) -> Option<ProvisionResult> {
        let Order::Provision { order, .. } = order else {
            return None;
        };
        self.provisioned
            .iter()
            .find(|(a, i, _)| *a == order.allocation_id && *i == order.inventory_id)
            .map(|(_, _, result)| result.clone())
    }

    /// The caller gives `order` up without answering it (a release whose clean-up failed:
    /// the contract has no failed release). It leaves the orders in flight and nothing is
    /// sent, so the server's resend (a release, after a reconnect) is delivered again. Returns
    /// a held release of the same allocation, now due, as [`OrderBook::answer`] does.
    pub fn abandon(&mut self, order: &Order) -> Option<Order> {
        self.in_flight.remove(&order.key())?;
        self.held_release(order)
    }

    /// After `order` left the orders in flight: the release held back for it, if any.
    fn held_release(&mut self, order: &Order) -> Option<Order> {
        let held = match order {
            Order::Provision { .. } => self.held.remove(&order.allocation_id())?,
            Order::Release { .. } => return None,
        };
        Some(Order::Release {
            order: held,
            connection: self.connection,
        })
    }

    /// The next answer to send on the current connection, once it is registered. Provision
    /// answers of an earlier connection are dropped on the way.
    pub fn take_unsent(&mut self) -> Option<AgentMessage> {
        if !self.registered {
            return None;
        }
        while let Some((connection, message)) = self.unsent.pop_front() {
            let provision = matches!(message, AgentMessage::Provisioned { .. });
            if provision && connection != self.connection {
                continue;
            }
            return Some(message);
        }
        None
    }

    /// Puts back an answer that could not be sent (the connection failed while sending).
    pub fn unsent_again(&mut self, message: AgentMessage) {
        self.unsent.push_front((self.connection, message));
    }
}

/// The reconnect delay: doubling from a minimum up to a cap, with "equal jitter" (between
/// half the step and all of it, so agents that lost the server together do not return
/// together, and none retries at once). The randomness is passed in.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next delay for `random` in `[0, 1)`; doubles the step, up to the cap.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    /// Back to the first step (after a registration the server accepted).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A small seeded generator of fractions in `[0, 1)` (SplitMix64): jitter needs spread, not
/// secrecy, and a seed makes a test's delays exact.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// Seeded with `seed`, or from the clock and the process id.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Jitter(seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }))
    }

    /// The next fraction.
    pub(crate) fn fraction(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocate_core::Connection;

    const ID: Uuid = Uuid::from_u128(1);

    fn provision() -> ServerMessage {
        ServerMessage::Provision(ProvisionOrder {
            allocation_id: ID,
            inventory_id: Uuid::from_u128(2),
            username: "ci".into(),
            expires: 100,
            ssh_keys: vec![],
            provision: None,
        })
    }

    fn release() -> ServerMessage {
        ServerMessage::Release(ReleaseOrder {
            allocation_id: ID,
            inventory_id: Uuid::from_u128(2),
        })
    }

    fn connection() -> ProvisionResult {
        ProvisionResult::Connection(Connection {
            host: "h".into(),
            username: "u".into(),
            password: Some("p".into()),
            port: None,
        })
    }

    #[test]
    fn an_order_is_delivered_once_and_its_answer_sent_when_registered() {
        let mut book = OrderBook::new();
        assert_eq!(book.connected(), 1);
        let OrderStep::Deliver(order) = book.on_order(provision()) else {
            panic!("not delivered")
        };
        assert_eq!(order.connection(), 1);
        assert_eq!(
            book.on_order(provision()),
            OrderStep::Wait,
            "a repeat waits"
        );
        assert_eq!(book.answer(&order, Some(connection())), None);
        assert_eq!(
            book.answer(&order, Some(connection())),
            None,
            "answered twice"
        );
        assert_eq!(book.take_unsent(), None, "not registered yet");
        book.registered();
        let Some(AgentMessage::Provisioned { allocation_id, .. }) = book.take_unsent() else {
            panic!("no answer")
        };
        assert_eq!((allocation_id, book.take_unsent()), (ID, None));
        assert_eq!(book.in_flight(), 0);
    }

    #[test]
    fn answers_belong_to_their_connection() {
        let mut book = OrderBook::new();
        book.connected();
        book.registered();
        let OrderStep::Deliver(p) = book.on_order(provision()) else {
            panic!()
        };
        let other = ServerMessage::Release(ReleaseOrder {
            allocation_id: Uuid::from_u128(9),
            inventory_id: Uuid::from_u128(2),
        });
        let OrderStep::Deliver(r) = book.on_order(other) else {
            panic!()
        };
        book.connected(); // the first connection dropped
        book.answer(&p, Some(connection()));
        book.answer(&r, None);
        book.registered();
        // The provision's answer is dropped (the server failed it); the release's is sent.
        assert_eq!(
            book.take_unsent(),
            Some(AgentMessage::Released {
                allocation_id: Uuid::from_u128(9)
            })
        );
        assert_eq!(book.take_unsent(), None);
    }

    #[test]
    fn an_order_resent_on_a_newer_connection_is_answered_there_once() {
        let mut book = OrderBook::new();
        book.connected();
        book.registered();
        let OrderStep::Deliver(p) = book.on_order(provision()) else {
            panic!()
        };
        // A blip: the second connection takes over and the server sends the order again.
        book.connected();
        book.registered();
        assert_eq!(book.on_order(provision()), OrderStep::Wait, "still running");
        book.answer(&p, Some(connection()));
        let answer = AgentMessage::Provisioned {
            allocation_id: ID,
            result: connection(),
        };
        assert_eq!(book.take_unsent(), Some(answer.clone()), "on the newer one");
        // Resent after it was answered (the answer was lost): the same answer, not a rerun.
        book.connected();
        book.registered();
        assert_eq!(book.on_order(provision()), OrderStep::Answer(answer));
        assert_eq!(book.in_flight(), 0);
        // The same allocation on another resource (placed again after a timeout) runs.
        let ServerMessage::Provision(mut elsewhere) = provision() else {
            unreachable!()
        };
        elsewhere.inventory_id = Uuid::from_u128(3);
        let OrderStep::Deliver(p2) = book.on_order(ServerMessage::Provision(elsewhere)) else {
            panic!("another resource is provisioned")
        };
        book.abandon(&p2);
        // Released, then provisioned again: both run again.
        let OrderStep::Deliver(r) = book.on_order(release()) else {
            panic!()
        };
        book.answer(&r, None);
        assert!(matches!(book.on_order(provision()), OrderStep::Deliver(_)));
        assert_eq!(book.in_flight(), 1);
        assert_eq!(
            book.on_order(release()),
            OrderStep::Wait,
            "a release waits for the provision, not the memory of the last one"
        );
    }

    #[test]
    fn a_release_waits_for_its_provision_and_a_resent_one_is_acknowledged() {
        let mut book = OrderBook::new();
        book.connected();
        book.registered();
        let OrderStep::Deliver(p) = book.on_order(provision()) else {
            panic!()
        };
        assert_eq!(book.on_order(release()), OrderStep::Wait);
        let Some(r) = book.answer(&p, Some(connection())) else {
            panic!("the held release is due")
        };
        assert!(matches!(r, Order::Release { .. }));
        book.answer(&r, None);
        assert!(matches!(
            book.take_unsent(),
            Some(AgentMessage::Provisioned { .. })
        ));
        assert!(matches!(
            book.take_unsent(),
            Some(AgentMessage::Released { .. })
        ));
        assert_eq!(
            book.on_order(release()),
            OrderStep::Answer(AgentMessage::Released { allocation_id: ID })
        );
    }

    #[test]
    fn an_abandoned_order_sends_nothing_and_its_resend_is_delivered_again() {
        let mut book = OrderBook::new();
        book.connected();
        book.registered();
        let OrderStep::Deliver(r) = book.on_order(release()) else {
            panic!()
        };
        assert_eq!(book.abandon(&r), None);
        assert_eq!(book.abandon(&r), None, "abandoned twice");
        assert_eq!((book.in_flight(), book.take_unsent()), (0, None));
        assert!(matches!(book.on_order(release()), OrderStep::Deliver(_)));

        // An abandoned provision lets the release held back for it go.
        let mut book = OrderBook::new();
        book.connected();
        let OrderStep::Deliver(p) = book.on_order(provision()) else {
            panic!()
        };
        assert_eq!(book.on_order(release()), OrderStep::Wait);
        assert!(matches!(book.abandon(&p), Some(Order::Release { .. })));
        assert_eq!(book.in_flight(), 1);
    }

    #[test]
    fn too_many_orders_refuse_provisions_and_drop_releases() {
        let mut book = OrderBook::new();
        book.connected();
        for i in 0..ORDERS_IN_FLIGHT_MAX as u128 {
            let order = ServerMessage::Provision(ProvisionOrder {
                allocation_id: Uuid::from_u128(1000 + i),
                inventory_id: ID,
                username: "u".into(),
                expires: 1,
                ssh_keys: vec![],
                provision: None,
            });
            assert!(matches!(book.on_order(order), OrderStep::Deliver(_)));
        }
        assert!(matches!(
            book.on_order(provision()),
            OrderStep::Answer(AgentMessage::Provisioned {
                result: ProvisionResult::Failed(_),
                ..
            })
        ));
        assert_eq!(book.on_order(release()), OrderStep::Drop);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(0.75), Duration::from_millis(175));
        assert_eq!(
            b.next_delay(0.5),
            Duration::from_micros(262_500),
            "the step is capped at 350"
        );
        assert_eq!(b.next_delay(1.0), Duration::from_millis(350), "capped");
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
        let (mut a, mut c) = (Jitter::new(Some(7)), Jitter::new(Some(7)));
        for _ in 0..100 {
            let f = a.fraction();
            assert!((0.0..1.0).contains(&f));
            assert_eq!(f, c.fraction(), "seeded jitter repeats");
        }
    }
}
