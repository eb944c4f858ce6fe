//! `telar-lambda-hub-sim`: the hub simulator as a Lambda function (see the crate docs).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let db = telar_lambda::database_from_env().await?;
    let router = telar_lambda::hub_sim_router(db, telar_lambda::kit_from_env()).await?;
    lambda_http::run(router).await
}
