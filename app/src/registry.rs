//! The games a binary can host, by the name a config's channels use (`app = "tag"`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::{App, DynApp};

/// Application names and how to make a fresh game for each channel that runs one.
///
/// ```
/// # use centrum_app::{App, AppError, ClientId, Ctx, NoCalls, Schema, Seq};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Chess;
/// # impl App for Chess {
/// #     type Join = (); type Input = (); type Call = NoCalls; type Reply = NoCalls; type Options = ();
/// #     fn schema(&self) -> Schema { Schema::new() }
/// #     fn join(&mut self, _: &mut Ctx<'_>, _: ClientId, _: ()) -> Result<(), AppError> { Ok(()) }
/// #     fn leave(&mut self, _: &mut Ctx<'_>, _: ClientId) -> Result<(), AppError> { Ok(()) }
/// #     fn input(&mut self, _: &mut Ctx<'_>, _: ClientId, _: Seq, _: ()) -> Result<(), AppError> { Ok(()) }
/// #     fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), AppError> { Ok(()) }
/// # }
/// use centrum_app::Registry;
///
/// let apps = Registry::new().with("chess", Chess::default);
/// assert!(apps.contains("chess"));
/// assert_eq!(apps.names().collect::<Vec<_>>(), ["chess"]);
/// let game = apps.create("chess").expect("registered");
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

type Factory = Arc<dyn Fn() -> Box<dyn DynApp> + Send + Sync>;

impl Registry {
    /// No applications.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds application `name`: every channel with `app = "name"` runs its own game
    /// made by `factory`. A name added again replaces the earlier one.
    pub fn add<A, F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        A: App,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let factory: Factory = Arc::new(move || Box::new(factory()));
        self.factories.insert(name.to_owned(), factory);
        self
    }

    /// [`Registry::add`], by value.
    pub fn with<A, F>(mut self, name: &str, factory: F) -> Self
    where
        A: App,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.add(name, factory);
        self
    }

    /// Whether `name` is an application of this registry.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Every application name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// A new game of application `name`; `None` when there is no such application.
    pub fn create(&self, name: &str) -> Option<Box<dyn DynApp>> {
        self.factories.get(name).map(|make| make())
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
