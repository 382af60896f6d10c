//! List answers: one [`Page`], or a stream of every item across pages that follows
//! `pagination.next_page_cursor` until the server says there is no next page.
//!
//! Servers that send no `pagination` block (Seam's fake) answer a single, complete page.

use std::collections::HashSet;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use keyway_model::Pagination;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::{decode, Client, Idempotency};
use crate::error::Error;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `None` when the server sent no pagination block (it answered everything at once).
    pub pagination: Option<Pagination>,
}

impl<T> Page<T> {
    /// The cursor of the next page, if there is one.
    pub fn next_cursor(&self) -> Option<&str> {
        self.pagination
            .as_ref()
            .filter(|p| p.has_next_page)
            .and_then(|p| p.next_page_cursor.as_deref())
            .filter(|c| !c.is_empty())
    }
}

/// A stream of list items, fetched page by page as it is polled.
pub type ItemStream<T> = BoxStream<'static, Result<T, Error>>;

/// Turns typed parameters into the JSON object sent as the request body.
pub(crate) fn to_object<P: Serialize + ?Sized>(params: &P) -> Result<Map<String, Value>, Error> {
    match serde_json::to_value(params) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(Error::Config(
            "parameters must encode as a JSON object".into(),
        )),
        Err(e) => Err(Error::Config(format!("cannot encode parameters: {e}"))),
    }
}

/// Fetches one page of `route`, whose items are under `key`.
pub(crate) async fn page<T: DeserializeOwned>(
    client: &Client,
    route: &str,
    params: &Map<String, Value>,
    key: &str,
) -> Result<Page<T>, Error> {
    let mut body = client.send(route, params, Idempotency::Read).await?;
    let items = match body.remove(key) {
        Some(value) => decode(route, key, value)?,
        None => {
            return Err(Error::Decode {
                route: route.to_owned(),
                message: format!("the answer has no `{key}`"),
            })
        }
    };
    let pagination = match body.remove("pagination") {
        None | Some(Value::Null) => None,
        Some(value) => Some(decode(route, "pagination", value)?),
    };
    Ok(Page { items, pagination })
}

/// Every item of `route`, following cursors. Stops at the last page, on the first error, or
/// if a server hands back a cursor it already gave (so a buggy server cannot loop forever).
pub(crate) fn items<T>(
    client: Client,
    route: &'static str,
    params: Map<String, Value>,
    key: &'static str,
) -> ItemStream<T>
where
    T: DeserializeOwned + Send + 'static,
{
    let start = params
        .get("page_cursor")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let state = (Some(start), HashSet::<String>::new());
    let pages = stream::try_unfold(state, move |(cursor, mut seen)| {
        let client = client.clone();
        let mut params = params.clone();
        async move {
            // `None`: finished. `Some(None)`: the first page. `Some(Some(c))`: the page at `c`.
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            match cursor {
                Some(cursor) => params.insert("page_cursor".into(), Value::String(cursor)),
                None => params.remove("page_cursor"),
            };
            let page: Page<T> = page(&client, route, &params, key).await?;
            let next = page
                .next_cursor()
                .filter(|c| seen.insert((*c).to_owned()))
                .map(|c| Some(c.to_owned()));
            Ok(Some((page.items, (next, seen))))
        }
    });
    pages
        .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_pagination_is_the_last() {
        let page: Page<u8> = Page {
            items: vec![1],
            pagination: None,
        };
        assert_eq!(page.next_cursor(), None);
        let page: Page<u8> = Page {
            items: vec![1],
            pagination: Some(Pagination {
                has_next_page: true,
                next_page_cursor: Some("abc".into()),
                next_page_url: None,
            }),
        };
        assert_eq!(page.next_cursor(), Some("abc"));
    }
}
