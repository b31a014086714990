//! [`AgentSession`]: an agent on `WEBSOCKET /agent/`.
//!
//! [`AgentSession::connect`] opens the socket, registers and waits for the server's `ok`; then
//! a task owns the socket. It hands the server's orders to the caller as [`AgentEvent`]s,
//! sends the caller's answers (from any task, through an [`AgentHandle`]), pings the server,
//! and when the connection ends waits a jittered, doubling delay ([`Backoff`]) and connects
//! and registers again. The bookkeeping (which order is running, which connection an answer
//! belongs to, what waits to be sent) is [`OrderBook`]'s. What to run for an order is the
//! caller's business.

mod book;

pub use book::{Backoff, Order, OrderBook, OrderStep};

use crate::client::Client;
use crate::error::Error;
use crate::socket::{self, Socket, SocketEnd};
use allocate_core::wire::{AgentMessage, Envelope, Refusal, ServerMessage, WireError};
use allocate_core::{Limits, ProvisionResult, ResourceSpec};
use book::Jitter;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Most events waiting for the caller; the session task waits while it is full.
const EVENTS_QUEUED_MAX: usize = 512;

/// Most commands (answers, registrations) waiting for the session task.
const COMMANDS_QUEUED_MAX: usize = 256;

/// How an [`AgentSession`] behaves.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Connect again after the connection ends (else the session ends with it).
    pub reconnect: bool,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long the server may take to answer a registration.
    pub register_timeout: Duration,
    /// How often the agent pings; a server silent for three of these is taken as gone. The
    /// default, 5 s, takes a server silent for 15 s as gone, as the server does a silent
    /// agent: a paused leader's agents then move to the new one within that.
    pub ping_interval: Duration,
    /// Seed of the reconnect jitter (tests); `None` seeds it from the clock.
    pub jitter_seed: Option<u64>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            reconnect: true,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            register_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(5),
            jitter_seed: None,
        }
    }
}

/// What the session tells its caller.
#[derive(Debug)]
pub enum AgentEvent {
    /// An order to carry out and answer through the [`AgentHandle`].
    Order(Order),
    /// A registration was accepted (after a reconnect, or a new resource list).
    Registered {
        /// The resources' inventory ids, in the order they were registered.
        inventory_ids: Vec<Uuid>,
        /// The connection it was accepted on.
        connection: u64,
    },
    /// The connection ended; `retry_in` is when the session connects again (`None`: it has
    /// ended).
    Disconnected {
        /// Why.
        error: Error,
        /// The delay before the next attempt.
        retry_in: Option<Duration>,
    },
    /// The server refused a message after the registration (logged, nothing else to do).
    Refused(Refusal),
    /// The server sent something this client cannot read (ignored; a malformed provision
    /// that names its allocation is answered with an error).
    Unreadable(WireError),
}

/// Where the answer to a new registration goes: the inventory ids or the refusal.
type RegisterReply = oneshot::Sender<Result<Vec<Uuid>, Error>>;

/// What the caller made of an order.
#[derive(Debug)]
enum Reply {
    Provisioned(ProvisionResult),
    Released,
    Abandoned,
}

/// A command for the session task.
#[derive(Debug)]
enum Command {
    Answer(Order, Reply),
    Register(String, RegisterReply),
    Stop,
}

/// Sends answers and commands to a running [`AgentSession`]; cheap to clone, usable from
/// any task.
#[derive(Clone, Debug)]
pub struct AgentHandle {
    commands: mpsc::Sender<Command>,
}

impl AgentHandle {
    /// Answers a provision order: the connection details, or why it failed. The answer goes
    /// to the newest connection that sent the order; it is dropped when that one has closed
    /// (the server has failed it already, or resends it on the connection that takes over).
    pub async fn provisioned(&self, order: &Order, result: ProvisionResult) -> Result<(), Error> {
        self.send(Command::Answer(order.clone(), Reply::Provisioned(result)))
            .await
    }

    /// Acknowledges a release order: the resource is clean. Sent on the next connection if
    /// this one has closed.
    pub async fn released(&self, order: &Order) -> Result<(), Error> {
        self.send(Command::Answer(order.clone(), Reply::Released))
            .await
    }

    /// Gives an order up without answering it (a release whose clean-up failed: the contract
    /// has no failed release, so the server's release timeout marks the resource `error`). It
    /// no longer counts as in flight, and the server's resend of it is delivered again.
    pub async fn abandon(&self, order: &Order) -> Result<(), Error> {
        self.send(Command::Answer(order.clone(), Reply::Abandoned))
            .await
    }

    /// Replaces the agent's resource list (on this connection and every later one); returns
    /// the inventory ids, or the server's refusal.
    pub async fn register(
        &self,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
    ) -> Result<Vec<Uuid>, Error> {
        let text = AgentMessage::Register {
            agent_id,
            resources,
        }
        .to_text();
        let (reply, replied) = oneshot::channel();
        self.send(Command::Register(text, reply)).await?;
        replied.await.map_err(|_| Error::AgentStopped)?
    }

    /// Closes the socket and ends the session.
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::AgentStopped)
    }
}

/// A registered agent: the server's orders as a stream of [`AgentEvent`]s.
#[derive(Debug)]
pub struct AgentSession {
    agent_id: Uuid,
    inventory_ids: Vec<Uuid>,
    events: mpsc::Receiver<AgentEvent>,
    handle: AgentHandle,
}

impl AgentSession {
    /// Connects to `/agent/`, registers `resources` as `agent_id` and waits for the server's
    /// `ok`; a refused upgrade or registration is returned, not retried.
    pub async fn connect(
        client: &Client,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
        options: AgentOptions,
    ) -> Result<Self, Error> {
        let mut task = Task::new(client, agent_id, resources, options);
        let (socket, inventory_ids) = task.open().await?;
        Ok(Self::launch(task, Some(socket), agent_id, inventory_ids))
    }

    /// Like [`AgentSession::connect`], but connects in the background and treats the first
    /// connection like every later one: its registration's acceptance is an
    /// [`AgentEvent::Registered`], and its failure (the server down, a refused upgrade or
    /// registration) an [`AgentEvent::Disconnected`], retried with backoff when `reconnect`
    /// is on. A long-running agent starts this way so that it also waits for a server that
    /// is not up yet. [`AgentSession::inventory_ids`] stays empty.
    pub fn start(
        client: &Client,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
        options: AgentOptions,
    ) -> Self {
        let task = Task::new(client, agent_id, resources, options);
        Self::launch(task, None, agent_id, Vec::new())
    }

    /// Runs `task` (from `socket`, or from connecting) and returns its session.
    fn launch(
        mut task: Task,
        socket: Option<Socket>,
        agent_id: Uuid,
        inventory_ids: Vec<Uuid>,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(EVENTS_QUEUED_MAX);
        let (commands_tx, commands) = mpsc::channel(COMMANDS_QUEUED_MAX);
        task.events = events_tx;
        tokio::spawn(task.run(socket, commands));
        AgentSession {
            agent_id,
            inventory_ids,
            events,
            handle: AgentHandle {
                commands: commands_tx,
            },
        }
    }

    /// The next event; `None` once the session has ended (stopped, or disconnected without
    /// reconnecting). Dropping the session ends it: the socket is closed.
    pub async fn next_event(&mut self) -> Option<AgentEvent> {
        self.events.recv().await
    }

    /// A handle for answering orders from other tasks.
    pub fn handle(&self) -> &AgentHandle {
        &self.handle
    }

    /// The agent's id.
    pub fn agent_id(&self) -> Uuid {
        self.agent_id
    }

    /// The inventory ids of the first registration.
    pub fn inventory_ids(&self) -> &[Uuid] {
        &self.inventory_ids
    }
}

/// How one connection ended.
enum Ended {
    Stop,
    Lost(Error),
}

/// The session task's state.
struct Task {
    client: Client,
    /// The registration sent on every connection.
    registration: String,
    options: AgentOptions,
    backoff: Backoff,
    jitter: Jitter,
    book: OrderBook,
    events: mpsc::Sender<AgentEvent>,
    /// A new registration sent on this connection, waiting for its reply.
    pending: Option<(String, RegisterReply)>,
}

impl Task {
    /// A task that registers `resources` as `agent_id`; its events go nowhere until
    /// [`AgentSession::launch`] gives it its channel.
    fn new(
        client: &Client,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
        options: AgentOptions,
    ) -> Self {
        let registration = AgentMessage::Register {
            agent_id,
            resources,
        }
        .to_text();
        Task {
            client: client.clone(),
            registration,
            backoff: Backoff::new(options.reconnect_min, options.reconnect_max),
            jitter: Jitter::new(options.jitter_seed),
            options,
            book: OrderBook::new(),
            events: mpsc::channel(EVENTS_QUEUED_MAX).0,
            pending: None,
        }
    }

    fn what(&self) -> String {
        // `ws://` or `wss://`, as the socket was opened.
        format!(
            "websocket {}/agent/",
            self.client.url().replacen("http", "ws", 1)
        )
    }

    /// Connects, registers, and waits for the reply (handling orders that come first).
    async fn open(&mut self) -> Result<(Socket, Vec<Uuid>), Error> {
        let mut socket = self.client.connect("agent/").await?;
        self.book.connected();
        let what = self.what();
        let lost = |end: SocketEnd| Error::Closed {
            what: what.clone(),
            end,
        };
        socket::send(&mut socket, Message::text(self.registration.clone()))
            .await
            .map_err(lost)?;
        let deadline = Instant::now() + self.options.register_timeout;
        loop {
            let text = tokio::time::timeout_at(deadline, socket::next_text(&mut socket))
                .await
                .map_err(|_| Error::Timeout {
                    what: format!("{what}: the registration"),
                    secs: self.options.register_timeout.as_secs_f64(),
                })?
                .map_err(lost)?;
            match ServerMessage::parse(&text) {
                Ok(Envelope::Ok(ServerMessage::Registered { inventory_ids })) => {
                    self.book.registered();
                    self.backoff.reset();
                    return Ok((socket, inventory_ids));
                }
                Ok(Envelope::Refused(refusal)) => {
                    socket::close(&mut socket).await;
                    return Err(Error::Refused {
                        what: format!("{what}: the registration"),
                        refusal: Box::new(refusal),
                    });
                }
                Ok(Envelope::Ok(order)) => {
                    if let Err(end) = self.on_order(&mut socket, order).await {
                        return Err(lost(end));
                    }
                }
                Err(e) => self.on_unreadable(&mut socket, e).await.map_err(lost)?,
            }
        }
    }

    /// Serves connections until stopped, reconnecting when one ends (if asked to).
    async fn run(mut self, mut socket: Option<Socket>, mut commands: mpsc::Receiver<Command>) {
        loop {
            let error = match socket.take() {
                Some(s) => match self.serve(s, &mut commands).await {
                    Ended::Stop => return,
                    Ended::Lost(error) => error,
                },
                None => match self.open().await {
                    Ok((s, inventory_ids)) => {
                        let connection = self.book.connection();
                        let event = AgentEvent::Registered {
                            inventory_ids,
                            connection,
                        };
                        if self.events.send(event).await.is_err() {
                            return;
                        }
                        socket = Some(s);
                        continue;
                    }
                    Err(error) => error,
                },
            };
            let retry_in = self
                .options
                .reconnect
                .then(|| self.backoff.next_delay(self.jitter.fraction()));
            let event = AgentEvent::Disconnected { error, retry_in };
            if self.events.send(event).await.is_err() {
                return;
            }
            let Some(delay) = retry_in else { return };
            if self.wait(delay, &mut commands).await.is_err() {
                return;
            }
        }
    }

    /// Waits `delay` while disconnected, still taking answers (they are sent later); `Err`
    /// when the session is to stop.
    async fn wait(
        &mut self,
        delay: Duration,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<(), ()> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => return Err(()),
                    Some(Command::Answer(order, reply)) => {
                        if let Some(due) = self.book_reply(&order, reply) {
                            if self.events.send(AgentEvent::Order(due)).await.is_err() {
                                return Err(());
                            }
                        }
                    }
                    Some(Command::Register(text, reply)) => {
                        // Sent on the next connection; answered there.
                        self.registration = text;
                        let _ = reply.send(Err(Error::Closed {
                            what: self.what(),
                            end: SocketEnd::Ended,
                        }));
                    }
                },
            }
        }
    }

    /// One registered connection, until it ends.
    async fn serve(&mut self, mut socket: Socket, commands: &mut mpsc::Receiver<Command>) -> Ended {
        let what = self.what();
        let lost = |end: SocketEnd| {
            Ended::Lost(Error::Closed {
                what: what.clone(),
                end,
            })
        };
        let interval = self.options.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut last_heard = Instant::now();
        loop {
            if self.events.is_closed() {
                // The caller dropped the session: nobody would carry out an order.
                socket::close(&mut socket).await;
                return Ended::Stop;
            }
            if let Err(end) = self.flush(&mut socket).await {
                return lost(end);
            }
            let step = tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => {
                        socket::close(&mut socket).await;
                        return Ended::Stop;
                    }
                    Some(Command::Answer(order, reply)) => {
                        match self.book_reply(&order, reply) {
                            Some(due) => self.deliver(due).await,
                            None => Ok(()),
                        }
                    }
                    Some(Command::Register(text, reply)) => {
                        self.pending = Some((text.clone(), reply));
                        socket::send(&mut socket, Message::text(text)).await
                    }
                },
                message = socket::next_message(&mut socket) => {
                    // Any frame counts as a sign of life: pings, and pongs to our pings.
                    last_heard = Instant::now();
                    match message {
                        Ok(Some(text)) => self.on_text(&mut socket, &text).await,
                        Ok(None) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                _ = ping.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= interval * 3 {
                        Err(SocketEnd::Silent(silent))
                    } else {
                        socket::send(&mut socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                if let Some((_, reply)) = self.pending.take() {
                    let _ = reply.send(Err(Error::Closed {
                        what: what.clone(),
                        end: end.clone(),
                    }));
                }
                return lost(end);
            }
        }
    }

    /// Books the caller's reply to `order`; returns a release now due to the caller.
    fn book_reply(&mut self, order: &Order, reply: Reply) -> Option<Order> {
        match reply {
            Reply::Provisioned(result) => self.book.answer(order, Some(result)),
            Reply::Released => self.book.answer(order, None),
            Reply::Abandoned => self.book.abandon(order),
        }
    }

    /// Sends the answers waiting for this connection.
    async fn flush(&mut self, socket: &mut Socket) -> Result<(), SocketEnd> {
        while let Some(message) = self.book.take_unsent() {
            if let Err(end) = socket::send(socket, Message::text(message.to_text())).await {
                self.book.unsent_again(message);
                return Err(end);
            }
        }
        Ok(())
    }

    /// Gives an order to the caller. A caller that has gone away ends nothing here: the
    /// session ends when its commands stop.
    async fn deliver(&mut self, order: Order) -> Result<(), SocketEnd> {
        let _ = self.events.send(AgentEvent::Order(order)).await;
        Ok(())
    }

    /// Handles one message of the server on a registered connection.
    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), SocketEnd> {
        match ServerMessage::parse(text) {
            Ok(Envelope::Ok(ServerMessage::Registered { inventory_ids })) => {
                if let Some((registration, reply)) = self.pending.take() {
                    self.registration = registration;
                    let _ = reply.send(Ok(inventory_ids.clone()));
                }
                let connection = self.book.connection();
                let _ = self
                    .events
                    .send(AgentEvent::Registered {
                        inventory_ids,
                        connection,
                    })
                    .await;
                Ok(())
            }
            Ok(Envelope::Ok(order)) => self.on_order(socket, order).await,
            Ok(Envelope::Refused(refusal)) => {
                match self.pending.take() {
                    Some((_, reply)) => {
                        let _ = reply.send(Err(Error::Refused {
                            what: format!("{}: the registration", self.what()),
                            refusal: Box::new(refusal),
                        }));
                    }
                    None => {
                        let _ = self.events.send(AgentEvent::Refused(refusal)).await;
                    }
                }
                Ok(())
            }
            Err(e) => self.on_unreadable(socket, e).await,
        }
    }

    /// Books an order: gives it to the caller, or answers it at once.
    async fn on_order(
        &mut self,
        socket: &mut Socket,
        order: ServerMessage,
    ) -> Result<(), SocketEnd> {
        match self.book.on_order(order) {
            OrderStep::Deliver(order) => self.deliver(order).await,
            OrderStep::Answer(message) => {
                socket::send(socket, Message::text(message.to_text())).await
            }
            OrderStep::Wait | OrderStep::Drop => Ok(()),
        }
    }

    /// A message this client cannot read: a provision that names its allocation is answered
    /// with an error (else the server would wait for its timeout); anything else is reported.
    async fn on_unreadable(
        &mut self,
        socket: &mut Socket,
        error: WireError,
    ) -> Result<(), SocketEnd> {
        if let WireError::Malformed {
            kind,
            allocation_id: Some(allocation_id),
            source,
        } = &error
        {
            if kind == "provision" {
                // Cut to what the server reads: a longer reason would be refused.
                let why = format!("the agent could not read the provision: {source}");
                let chars_max = Limits::default().string_chars_max;
                let answer = AgentMessage::Provisioned {
                    allocation_id: *allocation_id,
                    result: ProvisionResult::Failed(why.chars().take(chars_max).collect()),
                };
                socket::send(socket, Message::text(answer.to_text())).await?;
            }
        }
        let _ = self.events.send(AgentEvent::Unreadable(error)).await;
        Ok(())
    }
}
